// Hugging Face checkpoint folder → GGUF, in TypeScript: config.json + (sharded) safetensors + tokenizer.json /
// tokenizer_config.json. Tensors stream one at a time from the safetensors files into the GGUF writer (bounded
// memory: the largest tensor, twice), q/k rows are permuted for llama.cpp's "llama" RoPE, BF16/F16 are widened and
// re-encoded as F32, F16 or Q8_0. Every shape is checked against config.json before anything is written.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import { GgmlType, GgufWriter, encodeTensorData } from "../gguf/index.js";
import { readHfTokenizer, writeHfVocabMetadata, type HfVocab } from "./hf-tokenizer.js";
import { parseHfConfig, permuteRows, tensorMappings, type HfModelSpec } from "./hf-model.js";
import { SafetensorsSet } from "./safetensors.js";

export type ConvertType = "F32" | "F16" | "Q8_0";
const FILE_TYPES: Record<ConvertType, { ggml: GgmlType; ftype: number }> = {
  F32: { ggml: GgmlType.F32, ftype: 0 },
  F16: { ggml: GgmlType.F16, ftype: 1 },
  Q8_0: { ggml: GgmlType.Q8_0, ftype: 7 },
};

export function parseConvertType(s: string): ConvertType {
  const t = s.toUpperCase();
  if (t in FILE_TYPES) return t as ConvertType;
  throw new DajianError(
    "invalid_input",
    `unknown --type ${s}`,
    "use F32, F16 or Q8_0 (then `dajian quantize` for Q4_K_M etc.)",
  );
}

export function readJsonFile(path: string, what: string): any {
  if (!existsSync(path)) throw new DajianError("not_found", `no ${what} at ${path}`, `the folder needs its ${what}`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new DajianError("corrupt", `${what} is not valid JSON`, `fix or re-save ${what}`, { cause: err });
  }
}

/** Checkpoint tensors that carry no weights llama.cpp needs. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

export interface ConvertOptions {
  type?: ConvertType;
  /** general.name (default: the folder name). */
  name?: string;
  overwrite?: boolean;
  onProgress?: ProgressFn;
}

export interface ConvertResult {
  output: string;
  bytes: number;
  architecture: string;
  hfArchitecture: string;
  type: ConvertType;
  tensors: number;
  parameters: number;
  vocabSize: number;
  pre: string;
  hasChatTemplate: boolean;
}

/** Write the GGUF metadata of an llama/qwen2 model (hyper-parameters + vocabulary). */
export function writeModelMetadata(
  w: GgufWriter,
  spec: HfModelSpec,
  vocab: HfVocab,
  name: string,
  type: ConvertType,
): void {
  const c = spec.config;
  const a = spec.arch;
  w.str("general.architecture", a).str("general.type", "model").str("general.name", name);
  w.u32("general.file_type", FILE_TYPES[type].ftype).u32("general.quantization_version", 2);
  w.u32(`${a}.vocab_size`, c.vocabSize);
  w.u32(`${a}.context_length`, c.contextLength);
  w.u32(`${a}.embedding_length`, c.dim);
  w.u32(`${a}.block_count`, c.layers);
  w.u32(`${a}.feed_forward_length`, c.ffn);
  w.u32(`${a}.attention.head_count`, c.heads);
  w.u32(`${a}.attention.head_count_kv`, c.kvHeads);
  w.u32(`${a}.rope.dimension_count`, c.dim / c.heads);
  w.f32(`${a}.rope.freq_base`, c.ropeTheta);
  w.f32(`${a}.attention.layer_norm_rms_epsilon`, c.normEps);
  if (spec.ropeScaling?.type === "linear")
    w.str(`${a}.rope.scaling.type`, "linear").f32(`${a}.rope.scaling.factor`, spec.ropeScaling.factor);
  writeHfVocabMetadata(w, vocab);
}

/** Convert a Hugging Face checkpoint folder to a GGUF file that llama.cpp loads. */
export function convertHfCheckpoint(dir: string, output: string, opts: ConvertOptions = {}): ConvertResult {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw new DajianError("not_found", `${dir} is not a folder`, "give the Hugging Face checkpoint folder");
  if (existsSync(join(root, "adapter_config.json")))
    throw new DajianError(
      "invalid_input",
      `${dir} holds a LoRA adapter, not a model`,
      "convert it with `dajian convert ADAPTER_DIR OUT.gguf --base BASE` (adapter mode)",
    );
  if (existsSync(output) && !opts.overwrite)
    throw new DajianError("already_exists", `${output} already exists`, "pass --force to overwrite it");
  const type = opts.type ?? "F16";
  const spec = parseHfConfig(readJsonFile(join(root, "config.json"), "config.json"));
  const c = spec.config;
  const vocab = readHfTokenizer(root, { vocabSize: c.vocabSize });
  if (vocab.tokens.length !== c.vocabSize)
    throw new DajianError(
      "invalid_input",
      `tokenizer has ${vocab.tokens.length} tokens but config.json vocab_size is ${c.vocabSize}`,
      "use the tokenizer that belongs to this checkpoint",
    );
  const onProgress = opts.onProgress ?? noProgress;
  const st = SafetensorsSet.openDir(root);
  try {
    const maps = tensorMappings(spec);
    const expected = new Set(maps.map((m) => m.hf));
    for (const m of maps) {
      const info = st.info(m.hf);
      if (!info)
        throw new DajianError(
          "corrupt",
          `checkpoint lacks tensor ${m.hf}`,
          "the safetensors do not match config.json; use the complete checkpoint",
        );
      if (info.shape.join() !== m.shape.join())
        throw new DajianError(
          "corrupt",
          `tensor ${m.hf} has shape [${info.shape.join(", ")}], config.json implies [${m.shape.join(", ")}]`,
          "the safetensors do not match config.json; use the matching config",
        );
    }
    for (const n of st.names()) {
      if (expected.has(n) || IGNORED.test(n) || (n === "lm_head.weight" && c.tiedEmbeddings)) continue;
      throw new DajianError(
        "unsupported",
        `checkpoint has an unexpected tensor ${n}`,
        `dajian converts plain ${spec.hfArch} checkpoints; merge or drop extra modules first`,
      );
    }
    const w = new GgufWriter();
    writeModelMetadata(w, spec, vocab, opts.name ?? (root.split(/[\\/]/).pop() || "model"), type);
    const want = FILE_TYPES[type].ggml;
    let done = 0;
    let parameters = 0;
    for (const m of maps) {
      const dims = [...m.shape].reverse();
      const isVector = m.shape.length === 1;
      let t = isVector ? GgmlType.F32 : want;
      if (t === GgmlType.Q8_0 && dims[0] % 32 !== 0) t = GgmlType.F16;
      parameters += m.shape.reduce((x, y) => x * y, 1);
      w.addTensor(
        m.gguf,
        dims,
        () => {
          let v = st.f32(m.hf);
          if (m.permuteHeads) v = permuteRows(v, m.permuteHeads, isVector ? 1 : m.shape[1], true);
          onProgress({ phase: "tensors", done: ++done, total: maps.length, item: m.gguf });
          return t === GgmlType.F32 ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : encodeTensorData(v, t);
        },
        t,
      );
    }
    if (spec.ropeScaling?.type === "llama3")
      w.addTensor("rope_freqs.weight", [c.dim / c.heads / 2], spec.ropeScaling.freqFactors);
    const bytes = w.write(output);
    return {
      output,
      bytes,
      architecture: spec.arch,
      hfArchitecture: spec.hfArch,
      type,
      tensors: maps.length,
      parameters,
      vocabSize: c.vocabSize,
      pre: vocab.pre,
      hasChatTemplate: Boolean(vocab.chatTemplate),
    };
  } finally {
    st.close();
  }
}
