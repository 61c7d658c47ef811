// Merge a LoRA adapter into its base: W' = W + scale·(alpha/r)·B·A for every adapted matrix, every other tensor and
// all metadata copied byte for byte. Merged matrices are written in F32 so the merged model equals base + adapter
// exactly; `dajian merge --quantize` then runs llama.cpp's quantizer over the result.

import { DajianError } from "../../core/errors.js";
import { Context, type Engine } from "../../engine/index.js";
import { readLoraAdapterGguf } from "../../gguf/adapter.js";
import {
  GgmlType,
  GgufReader,
  GgufWriter,
  decodeTensorData,
  metaString,
  type GgufTensorInfo,
} from "../../gguf/index.js";
import { dequantizeWithGgml, rawTensor } from "./base.js";

export interface MergeResult {
  out: string;
  bytes: number;
  merged: number;
  rank: number;
  alpha: number;
}

/** f32 values of a base tensor: TypeScript decoders where they exist, ggml's dequantizer for the rest. */
function tensorValues(engine: Engine, r: GgufReader, t: GgufTensorInfo): Float32Array {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if ([GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0].includes(t.type)) {
    return decodeTensorData(r.tensorBytes(t), t.type, n);
  }
  using ctx = new Context(engine.lib, { memBytes: t.size + n * 8 + (4 << 20) });
  return dequantizeWithGgml(ctx, rawTensor(ctx, t, r.tensorBytes(t)));
}

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Write base + adapter as one GGUF at `out` (atomically). */
export function mergeAdapter(
  engine: Engine,
  basePath: string,
  adapterPath: string,
  out: string,
  o: { scale?: number; name?: string; dequantizeAll?: boolean } = {},
): MergeResult {
  const ad = readLoraAdapterGguf(adapterPath);
  using r = GgufReader.open(basePath);
  const arch = metaString(r, "general.architecture");
  if (ad.architecture !== arch) {
    throw new DajianError(
      "invalid_input",
      `adapter is for "${ad.architecture}" but the base is "${arch}"`,
      "merge the adapter into the base it was trained on",
    );
  }
  const pairs = new Map(ad.tensors.map((p) => [p.name, p]));
  for (const p of ad.tensors) {
    const t = r.tensors.find((x) => x.name === p.name);
    if (!t || t.dims[0] !== p.inDim || t.dims[1] !== p.outDim) {
      throw new DajianError(
        "invalid_input",
        `adapter tensor ${p.name} [${p.inDim}, ${p.outDim}] does not match the base`,
        "merge the adapter into the base it was trained on",
      );
    }
  }
  const w = new GgufWriter({ alignment: r.alignment });
  for (const [k, v] of r.metadata) if (k !== "general.alignment") w.set(k, v);
  if (o.name) w.str("general.name", o.name);
  if (o.dequantizeAll) w.u32("general.file_type", 0);
  const scale = o.scale ?? 1;
  let rank = 0;
  for (const t of r.tensors) {
    const p = pairs.get(t.name);
    if (!p) {
      // llama.cpp's quantizer refuses to requantize, so a merge that will be quantized next is written in F32.
      if (o.dequantizeAll && t.type !== GgmlType.F32) {
        w.addTensor(t.name, t.dims, () => f32Bytes(tensorValues(engine, r, t)), GgmlType.F32);
      } else w.addTensor(t.name, t.dims, () => r.tensorBytes(t), t.type);
      continue;
    }
    rank = p.rank;
    const s = scale * (ad.alpha ? ad.alpha / p.rank : 1);
    w.addTensor(
      t.name,
      t.dims,
      () => {
        // ggml [in, out]: row o holds the `in` weights of output o; delta[o][i] = Σ_k B[o][k]·A[k][i]
        const W = tensorValues(engine, r, t);
        const { inDim, outDim, a, b } = p;
        for (let oo = 0; oo < outDim; oo++) {
          const row = oo * inDim;
          for (let k = 0; k < p.rank; k++) {
            const c = s * b[oo * p.rank + k];
            if (c === 0) continue;
            const ak = k * inDim;
            for (let i = 0; i < inDim; i++) W[row + i] += c * a[ak + i];
          }
        }
        return f32Bytes(W);
      },
      GgmlType.F32,
    );
  }
  const bytes = w.write(out);
  return { out, bytes, merged: pairs.size, rank, alpha: ad.alpha };
}
