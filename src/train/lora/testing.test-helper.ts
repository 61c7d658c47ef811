// Test helpers shared by the LoRA tests: rows with a trained tail, random adapters, and the check that llama.cpp
// with an exported adapter computes what dajian's own forward pass computes.

import type { BpeVocab } from "../../tokenizer/index.js";
import { BpeTokenizer } from "../../tokenizer/index.js";
import { Rng } from "../rng.js";
import { llamaCppProbabilities, openLlamaCpp } from "./llamacpp.js";
import type { LoraTrainer, SftRow } from "./trainer.js";

/** A row whose tokens from `fromFraction` of its length on are trained. */
export function loraRow(vocab: BpeVocab, text: string, fromFraction = 0.5): SftRow {
  const ids = new BpeTokenizer(vocab).encode(text);
  return { ids, mask: ids.map((_, i) => (i >= ids.length * fromFraction ? 1 : 0)) };
}

/** Put random values in every B (A is random already) so the adapter changes the output. */
export function randomizeB(tr: LoraTrainer, seed: number, std: number): void {
  const rng = new Rng(seed);
  for (const p of tr.adapterTensors()) {
    tr.setParam(
      `${p.name}.lora_b`,
      Float32Array.from(p.b, () => rng.normal() * std),
    );
  }
}

/** ‖a − b‖ / ‖b‖. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den > 0 ? Math.sqrt(num / den) : Infinity;
}

export function softmaxOf(l: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < l.length; i++) mx = Math.max(mx, l[i]);
  const e = Float64Array.from(l, (x) => Math.exp(x - mx));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** Mean next-token cross-entropy over the trained positions of `r`, from logits [position][vocab] (in f64). */
export function maskedLossFromLogits(logits: ArrayLike<number>[], r: SftRow): { loss: number; tokens: number } {
  let sum = 0;
  let n = 0;
  for (let t = 1; t < r.ids.length; t++) {
    if (!r.mask[t]) continue;
    sum -= Math.log(softmaxOf(logits[t - 1])[r.ids[t]]);
    n++;
  }
  return { loss: sum / n, tokens: n };
}

/**
 * dajian's probabilities (base + the trainer's current adapter) against llama.cpp's with `adapter` on `basePath`
 * (or `merged` alone): the largest difference, and how far the adapter moves llama.cpp from the plain base.
 */
export async function compareWithLlamaCpp(
  tr: LoraTrainer,
  basePath: string,
  adapter: string | undefined,
  ids: number[],
  merged?: string,
): Promise<{ maxErr: number; adapterEffect: number }> {
  const ours = (await tr.forwardLogits(ids)).map(softmaxOf);
  const s = merged
    ? await openLlamaCpp(merged, undefined, { contextSize: 64 })
    : await openLlamaCpp(basePath, adapter, { contextSize: 64 });
  const plain = await openLlamaCpp(basePath, undefined, { contextSize: 64 });
  try {
    const theirs = await llamaCppProbabilities(s, ids);
    const without = await llamaCppProbabilities(plain, ids);
    let maxErr = 0;
    let adapterEffect = 0;
    ours.forEach((p, pos) => {
      for (const [t, pr] of theirs[pos]) {
        maxErr = Math.max(maxErr, Math.abs(p[t] - pr));
        adapterEffect = Math.max(adapterEffect, Math.abs(pr - (without[pos].get(t) ?? 0)));
      }
    });
    return { maxErr, adapterEffect };
  } finally {
    await s.dispose();
    await plain.dispose();
  }
}

/**
 * The backward's gradient of `name` at its largest entry and the central finite difference of the masked loss there
 * (the parameter is restored afterwards).
 */
export async function gradientAndFiniteDifference(
  tr: LoraTrainer,
  r: SftRow,
  name: string,
  eps = 1e-2,
): Promise<{ grad: number; fd: number }> {
  await tr.lossAndGrad([r]);
  const g = tr.gradient(name);
  const w = tr.param(name);
  const i = [...g.keys()].sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]))[0];
  const at = async (v: number): Promise<number> => {
    const w2 = w.slice();
    w2[i] = v;
    tr.setParam(name, w2);
    const e = await tr.evaluate([r]);
    return e.lossSum / e.tokens;
  };
  const fd = ((await at(w[i] + eps)) - (await at(w[i] - eps))) / (2 * eps);
  tr.setParam(name, w);
  return { grad: g[i], fd };
}
