// GGUF (llama / qwen2 architecture) → Hugging Face folder: config.json, model.safetensors (or shards with
// model.safetensors.index.json), tokenizer.json, tokenizer_config.json, generation_config.json — what transformers'
// from_pretrained and llama.cpp's own converter read. Tensors are decoded one at a time and the llama q/k row
// permutation is undone. The folder is built under a temporary name and renamed, so no half export is left behind.

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import { GgmlType, GgufReader, metaNumber, metaString, type GgufTensorInfo } from "../gguf/index.js";
import type { LlamaConfig } from "../train/llama-gguf.js";
import { hfConfigJson, permuteRows, tensorMappings, type HfArchitecture, type HfModelSpec } from "./hf-model.js";
import { hfTokenizerConfig, hfTokenizerJson, readGgufVocab } from "./hf-tokenizer.js";
import { decodeSafe, encodeSafe, writeSafetensors, type SafeDtype, type SafeTensorOut } from "./safetensors.js";

export interface ExportHfOptions {
  /** Safetensors dtype (default F32 for F32 models, else F16). */
  dtype?: SafeDtype;
  /** Write a llama-architecture GGUF as MistralForCausalLM instead of LlamaForCausalLM. */
  hfArchitecture?: HfArchitecture;
  /** Split model.safetensors into shards of at most this many bytes (plus an index), as save_pretrained does. */
  maxShardBytes?: number;
  onProgress?: ProgressFn;
}

export interface ExportHfResult {
  dir: string;
  hfArchitecture: HfArchitecture;
  dtype: SafeDtype;
  files: string[];
  tensors: number;
}

/** Read the model description of a dajian-readable GGUF. */
export function specFromGguf(r: GgufReader, hfArchitecture?: HfArchitecture): HfModelSpec {
  const arch = metaString(r, "general.architecture");
  if (arch !== "llama" && arch !== "qwen2")
    throw new DajianError(
      "unsupported",
      `GGUF architecture ${arch ?? "(none)"} cannot be exported to Hugging Face format`,
      "dajian exports llama and qwen2 models",
    );
  const need = (k: string): number => {
    const v = metaNumber(r, `${arch}.${k}`);
    if (v === undefined)
      throw new DajianError("corrupt", `GGUF lacks ${arch}.${k}`, "re-export the model with its hyper-parameters");
    return v;
  };
  const embd = r.tensors.find((t) => t.name === "token_embd.weight");
  if (!embd) throw new DajianError("corrupt", "GGUF has no token_embd.weight", "use a complete model file");
  const heads = need("attention.head_count");
  const config: LlamaConfig = {
    vocabSize: embd.dims[1],
    layers: need("block_count"),
    dim: need("embedding_length"),
    heads,
    kvHeads: metaNumber(r, `${arch}.attention.head_count_kv`) ?? heads,
    ffn: need("feed_forward_length"),
    contextLength: metaNumber(r, `${arch}.context_length`) ?? 4096,
    ropeTheta: metaNumber(r, `${arch}.rope.freq_base`) ?? 10000,
    normEps: need("attention.layer_norm_rms_epsilon"),
    tiedEmbeddings: !r.tensors.some((t) => t.name === "output.weight"),
  };
  const rot = metaNumber(r, `${arch}.rope.dimension_count`);
  if (rot !== undefined && rot !== config.dim / heads)
    throw new DajianError("unsupported", `partial RoPE (${rot} of ${config.dim / heads} dims)`, "not exportable");
  if (r.tensors.some((t) => t.name === "rope_freqs.weight") || metaString(r, `${arch}.rope.scaling.type`))
    throw new DajianError(
      "unsupported",
      "GGUFs with RoPE scaling cannot be exported to Hugging Face format yet",
      "export a model without rope scaling",
    );
  const hfArch: HfArchitecture = arch === "qwen2" ? "Qwen2ForCausalLM" : (hfArchitecture ?? "LlamaForCausalLM");
  if ((arch === "qwen2") !== (hfArch === "Qwen2ForCausalLM"))
    throw new DajianError("invalid_input", `a ${arch} GGUF cannot be written as ${hfArch}`, "drop --hf-arch");
  return { hfArch, arch, config, qkvBias: arch === "qwen2", permuteQK: arch === "llama" };
}

function tensorValues(r: GgufReader, t: GgufTensorInfo): Float32Array {
  if (t.type === GgmlType.BF16) return decodeSafe(r.tensorBytes(t), "BF16");
  try {
    return r.tensorF32(t.name);
  } catch (err) {
    throw new DajianError(
      "unsupported",
      `tensor ${t.name} is ${GgmlType[t.type]}, which dajian cannot decode`,
      "export from an F32, F16, BF16, Q8_0 or Q4_0 GGUF",
      { cause: err },
    );
  }
}

/** Export a GGUF model to a Hugging Face checkpoint folder (`dir` must not exist or be empty). */
export function exportHfCheckpoint(gguf: string, dir: string, opts: ExportHfOptions = {}): ExportHfResult {
  const out = resolve(dir);
  if (existsSync(out) && readdirSync(out).length > 0)
    throw new DajianError("already_exists", `${dir} is not empty`, "export into a new or empty folder");
  const r = GgufReader.open(gguf);
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    const spec = specFromGguf(r, opts.hfArchitecture);
    const vocab = readGgufVocab(r);
    const c = spec.config;
    if (vocab.tokens.length !== c.vocabSize)
      throw new DajianError(
        "corrupt",
        `vocabulary has ${vocab.tokens.length} tokens, token_embd has ${c.vocabSize} rows`,
        "re-export the model",
      );
    const embd = r.tensor("token_embd.weight");
    const dtype: SafeDtype = opts.dtype ?? (embd.type === GgmlType.F32 ? "F32" : "F16");
    const maps = tensorMappings(spec);
    const onProgress = opts.onProgress ?? noProgress;
    let done = 0;
    const tensors: SafeTensorOut[] = maps.map((m) => {
      const info = r.tensors.find((t) => t.name === m.gguf);
      const n = m.shape.reduce((a, b) => a * b, 1);
      if (info && info.dims.join() !== [...m.shape].reverse().join())
        throw new DajianError(
          "corrupt",
          `${m.gguf} has dims [${info.dims.join(", ")}], expected [${[...m.shape].reverse().join(", ")}]`,
          "the GGUF's tensors do not match its hyper-parameters",
        );
      if (!info && !m.gguf.endsWith(".bias"))
        throw new DajianError("corrupt", `GGUF lacks tensor ${m.gguf}`, "use a complete model file");
      return {
        name: m.hf,
        dtype: m.shape.length === 1 && dtype !== "F32" ? "F32" : dtype,
        shape: m.shape,
        data: () => {
          // A qwen2 GGUF without q/k/v biases has zero biases; transformers' Qwen2 always has them.
          let v = info ? tensorValues(r, info) : new Float32Array(n);
          if (m.permuteHeads) v = permuteRows(v, m.permuteHeads, m.shape.length === 1 ? 1 : m.shape[1], false);
          onProgress({ phase: "tensors", done: ++done, total: maps.length, item: m.hf });
          return encodeSafe(v, m.shape.length === 1 && dtype !== "F32" ? "F32" : dtype);
        },
      };
    });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const files = writeShards(tmp, tensors, opts.maxShardBytes);
    const torchDtype = { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype];
    const eos = vocab.eotId !== undefined && vocab.eotId !== vocab.eosId ? [vocab.eosId, vocab.eotId] : vocab.eosId;
    const json = (name: string, v: unknown) => {
      writeFileSync(join(tmp, name), JSON.stringify(v, null, 2) + "\n");
      files.push(name);
    };
    json("config.json", hfConfigJson(spec, { bosId: vocab.bosId, eosId: vocab.eosId, torchDtype }));
    json("generation_config.json", {
      ...(vocab.bosId !== undefined ? { bos_token_id: vocab.bosId } : {}),
      ...(eos !== undefined ? { eos_token_id: eos } : {}),
      ...(vocab.padId !== undefined ? { pad_token_id: vocab.padId } : {}),
      transformers_version: "4.44.0",
    });
    json("tokenizer.json", hfTokenizerJson(vocab));
    json("tokenizer_config.json", hfTokenizerConfig(vocab));
    const name = metaString(r, "general.name");
    if (name) writeFileSync(join(tmp, "README.md"), `# ${name}\n\nExported from GGUF by dajian.\n`);
    mkdirSync(dirname(out), { recursive: true });
    rmSync(out, { recursive: true, force: true }); // empty (checked above)
    renameSync(tmp, out);
    return { dir: out, hfArchitecture: spec.hfArch, dtype, files, tensors: tensors.length };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    r.close();
  }
}

/** One model.safetensors, or shards of at most `maxBytes` plus model.safetensors.index.json. */
function writeShards(dir: string, tensors: SafeTensorOut[], maxBytes?: number): string[] {
  const bytesOf = (t: SafeTensorOut) => t.shape.reduce((a, b) => a * b, 1) * (t.dtype === "F32" ? 4 : 2);
  const total = tensors.reduce((a, t) => a + bytesOf(t), 0);
  if (!maxBytes || total <= maxBytes) {
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    return ["model.safetensors"];
  }
  const groups: SafeTensorOut[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    if (size > 0 && size + bytesOf(t) > maxBytes) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += bytesOf(t);
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  groups.forEach((g, i) => {
    const f = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    writeSafetensors(join(dir, f), g, { format: "pt" });
    for (const t of g) weightMap[t.name] = f;
    files.push(f);
  });
  writeFileSync(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n",
  );
  files.push("model.safetensors.index.json");
  return files;
}
