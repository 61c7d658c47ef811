// Model presets named by size, and free dimensions that override them. Sizes count every trained parameter
// (untied input and output embeddings included) for the preset's own vocabulary.

import { DajianError } from "../../core/errors.js";
import { llamaTensorShapes, validateLlamaConfig, type LlamaConfig } from "../llama-gguf.js";

export interface ModelShape {
  vocab: number;
  layers: number;
  dim: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  /** Training sequence length (also the exported context length). */
  seq: number;
  /** Sequences per micro-batch. */
  batch: number;
}

export type PresetName = "tiny" | "small" | "base";

/**
 * tiny ≈ 0.9M (tests, smoke runs), small ≈ 10M (the benchmark shape; minutes on a laptop CPU),
 * base ≈ 100M (hours on a CPU; ~2.7 GiB of training memory at its default batch).
 */
export const PRESETS: Record<PresetName, ModelShape> = {
  tiny: { vocab: 2048, layers: 2, dim: 128, heads: 4, kvHeads: 2, ffn: 384, seq: 128, batch: 8 },
  small: { vocab: 8192, layers: 8, dim: 256, heads: 8, kvHeads: 4, ffn: 688, seq: 128, batch: 8 },
  base: { vocab: 16384, layers: 12, dim: 768, heads: 12, kvHeads: 4, ffn: 2048, seq: 256, batch: 4 },
};

/** Peak learning rate per preset (smaller models tolerate larger steps). */
export const PRESET_LR: Record<PresetName, number> = { tiny: 3e-3, small: 1e-3, base: 6e-4 };

export function isPresetName(s: string): s is PresetName {
  return Object.hasOwn(PRESETS, s);
}

/** The preset's shape with any given dimension replaced. */
export function resolveShape(preset: string, overrides: Partial<ModelShape> = {}): ModelShape {
  if (!isPresetName(preset)) {
    throw new DajianError(
      "invalid_input",
      `unknown preset "${preset}"`,
      `use one of ${Object.keys(PRESETS).join(", ")} (and --layers/--dim/… to adjust)`,
    );
  }
  const shape: ModelShape = { ...PRESETS[preset] };
  for (const [k, v] of Object.entries(overrides) as Array<[keyof ModelShape, number | undefined]>) {
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1) {
      throw new DajianError("invalid_input", `--${flagName(k)} must be a positive integer, got ${v}`, "fix the value");
    }
    shape[k] = v;
  }
  // Changing heads alone must not leave a preset's kv-heads that no longer divides it.
  if (overrides.heads !== undefined && overrides.kvHeads === undefined && shape.heads % shape.kvHeads !== 0) {
    shape.kvHeads = shape.heads;
  }
  if (shape.seq < 2) throw new DajianError("invalid_input", "--seq must be at least 2", "pass e.g. --seq 128");
  validateLlamaConfig(llamaConfig(shape, shape.vocab));
  return shape;
}

function flagName(k: keyof ModelShape): string {
  return k === "kvHeads" ? "kv-heads" : k;
}

/** The llama hyper-parameters for a shape once the tokenizer's real vocabulary size is known. */
export function llamaConfig(shape: ModelShape, vocabSize: number): LlamaConfig {
  return {
    vocabSize,
    layers: shape.layers,
    dim: shape.dim,
    heads: shape.heads,
    kvHeads: shape.kvHeads,
    ffn: shape.ffn,
    contextLength: shape.seq,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
  };
}

export function countParams(c: LlamaConfig): number {
  return llamaTensorShapes(c).reduce((a, s) => a + s.dims.reduce((x, y) => x * y, 1), 0);
}
