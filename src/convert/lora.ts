// PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) → llama.cpp adapter GGUF.
// PEFT stores lora_A [r, in] and lora_B [out, r] per module (base_model.model.<module>.lora_A.weight); these are
// exactly the row-major layouts of GGUF's .lora_a [in, r] and .lora_b [r, out]. For llama-architecture bases the
// rows of q/k are permuted in GGUF, so B's rows are permuted the same way (A is untouched), as llama.cpp's converter
// does. rsLoRA (alpha/√r) is folded into alpha, since llama.cpp always scales by alpha/r.

import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { writeLoraAdapterGguf, type LoraTensorPair } from "../gguf/adapter.js";
import { GgufReader, metaString } from "../gguf/index.js";
import { readJsonFile } from "./convert-hf.js";
import { specFromGguf } from "./export-hf.js";
import { ggufNameForHfModule, parseHfConfig, permuteRows, type HfModelSpec } from "./hf-model.js";
import { SafetensorsSet } from "./safetensors.js";

export interface ConvertLoraOptions {
  /** The base model: a GGUF file or a Hugging Face checkpoint folder (architecture, heads and shapes come from it). */
  base: string;
  overwrite?: boolean;
  name?: string;
}

export interface ConvertLoraResult {
  output: string;
  bytes: number;
  architecture: string;
  rank: number;
  alpha: number;
  tensors: number;
  modules: string[];
}

/** Base-model facts an adapter must agree with: architecture, heads and each target matrix's GGUF dims. */
function baseInfo(base: string): { spec: HfModelSpec; dims: (gguf: string) => number[] | undefined } {
  if (!existsSync(base))
    throw new DajianError("not_found", `base model ${base} not found`, "pass --base BASE.gguf or the HF model folder");
  if (statSync(base).isDirectory()) {
    const spec = parseHfConfig(readJsonFile(join(base, "config.json"), "config.json"));
    const c = spec.config;
    const hd = c.dim / c.heads;
    const dims: Record<string, number[]> = {
      attn_q: [c.dim, c.heads * hd],
      attn_k: [c.dim, c.kvHeads * hd],
      attn_v: [c.dim, c.kvHeads * hd],
      attn_output: [c.heads * hd, c.dim],
      ffn_gate: [c.dim, c.ffn],
      ffn_up: [c.dim, c.ffn],
      ffn_down: [c.ffn, c.dim],
    };
    return {
      spec,
      dims: (g) => {
        const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(g);
        return m && Number(m[1]) < c.layers ? dims[m[2]] : undefined;
      },
    };
  }
  const r = GgufReader.open(base);
  try {
    if (metaString(r, "general.type") === "adapter")
      throw new DajianError("invalid_input", `${base} is an adapter, not a base model`, "pass the base model GGUF");
    const spec = specFromGguf(r);
    const all = new Map(r.tensors.map((t) => [t.name, t.dims] as const));
    return { spec, dims: (g) => all.get(g) };
  } finally {
    r.close();
  }
}

/** Convert a PEFT LoRA folder to a GGUF adapter for `base`. */
export function convertPeftLora(dir: string, output: string, opts: ConvertLoraOptions): ConvertLoraResult {
  const root = resolve(dir);
  if (existsSync(output) && !opts.overwrite)
    throw new DajianError("already_exists", `${output} already exists`, "pass --force to overwrite it");
  const cfg = readJsonFile(join(root, "adapter_config.json"), "adapter_config.json");
  if (cfg.peft_type !== undefined && cfg.peft_type !== "LORA")
    throw new DajianError("unsupported", `adapter type ${cfg.peft_type}`, "dajian converts PEFT LoRA adapters");
  if (cfg.use_dora) throw new DajianError("unsupported", "DoRA adapters", "train a plain LoRA adapter");
  if (cfg.alpha_pattern && Object.keys(cfg.alpha_pattern).length)
    throw new DajianError("unsupported", "per-module alpha_pattern", "llama.cpp has one alpha per adapter");
  const r0 = cfg.r;
  const alpha0 = cfg.lora_alpha ?? r0;
  if (!Number.isSafeInteger(r0) || r0 <= 0 || typeof alpha0 !== "number" || !(alpha0 > 0))
    throw new DajianError("invalid_input", "adapter_config.json: r and lora_alpha must be positive", "fix the config");
  const alpha = cfg.use_rslora ? alpha0 * Math.sqrt(r0) : alpha0;
  if (!existsSync(join(root, "adapter_model.safetensors")) && existsSync(join(root, "adapter_model.bin")))
    throw new DajianError(
      "unsupported",
      "adapter_model.bin (pickle) is not read by dajian",
      "save the adapter with safe_serialization=True (adapter_model.safetensors)",
    );
  const { spec, dims } = baseInfo(opts.base);
  const st = SafetensorsSet.openDir(root, "adapter_model");
  try {
    const modules = new Map<string, { a?: string; b?: string }>();
    for (const n of st.names()) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(n);
      if (!m)
        throw new DajianError(
          "unsupported",
          `adapter tensor ${n} is not a LoRA A/B matrix`,
          "dajian converts LoRA on linear layers only (no modules_to_save, embeddings or biases)",
        );
      const e = modules.get(m[1]) ?? {};
      e[m[2] === "A" ? "a" : "b"] = n;
      modules.set(m[1], e);
    }
    const tensors: LoraTensorPair[] = [];
    for (const [module, e] of modules) {
      const gguf = ggufNameForHfModule(module);
      if (!gguf)
        throw new DajianError(
          "unsupported",
          `LoRA on ${module}`,
          "target attention/MLP projections (q,k,v,o,gate,up,down)",
        );
      if (!e.a || !e.b) throw new DajianError("corrupt", `${module} lacks lora_${e.a ? "B" : "A"}`, "save it again");
      const [rank, inDim] = st.info(e.a)!.shape;
      const [outDim, rankB] = st.info(e.b)!.shape;
      const baseDims = dims(gguf);
      if (!baseDims)
        throw new DajianError(
          "invalid_input",
          `base model has no ${gguf} for ${module}`,
          "pass the adapter's base model",
        );
      if (rank !== rankB || baseDims[0] !== inDim || baseDims[1] !== outDim)
        throw new DajianError(
          "invalid_input",
          `${module}: A [${rank}, ${inDim}] / B [${outDim}, ${rankB}] do not fit the base ${gguf} [${baseDims.join(", ")}]`,
          "pass the base model this adapter was trained on",
        );
      let b = st.f32(e.b);
      const p = /\.attn_([qk])\.weight$/.exec(gguf);
      if (p && spec.permuteQK) b = permuteRows(b, p[1] === "q" ? spec.config.heads : spec.config.kvHeads, rank, true);
      tensors.push({ name: gguf, rank, inDim, outDim, a: st.f32(e.a), b });
    }
    if (tensors.length === 0) throw new DajianError("corrupt", "adapter has no LoRA tensors", "save it again");
    const bytes = writeLoraAdapterGguf(output, { architecture: spec.arch, alpha, tensors, name: opts.name });
    return {
      output,
      bytes,
      architecture: spec.arch,
      rank: r0,
      alpha,
      tensors: tensors.length * 2,
      modules: [...modules.keys()],
    };
  } finally {
    st.close();
  }
}
