// Half-precision conversion and ggml's Q8_0 / Q4_0 block quantization, bit-exact with ggml's reference
// quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref), so files match what llama.cpp itself would write.

import { GgmlType } from "./types.js";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half bits, round-to-nearest-even (as F16C and ggml's software path do). */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf / nan (keep quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow → ±0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // a carry into the exponent is still the right answer
  return sign | h;
}

/** IEEE half bits → number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function encodeF16(src: Float32Array): Uint8Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]);
  return new Uint8Array(out.buffer);
}

const fr = Math.fround;

/** Q8_0: blocks of 32 → f16 scale + 32 × int8 (34 bytes). */
export function quantizeQ8_0(src: Float32Array): Uint8Array {
  if (src.length % 32 !== 0) throw new RangeError(`Q8_0 needs a multiple of 32 values, got ${src.length}`);
  const nb = src.length / 32;
  const out = new Uint8Array(nb * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const base = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[base + j]));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const x = fr(src[base + j] * id);
      // roundf: half away from zero
      const q = x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
      dv.setInt8(b * 34 + 2 + j, q);
    }
  }
  return out;
}

/** Q4_0: blocks of 32 → f16 scale + 16 bytes of nibbles (18 bytes); low nibbles hold the first half. */
export function quantizeQ4_0(src: Float32Array): Uint8Array {
  if (src.length % 32 !== 0) throw new RangeError(`Q4_0 needs a multiple of 32 values, got ${src.length}`);
  const nb = src.length / 32;
  const out = new Uint8Array(nb * 18);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const base = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = src[base + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(src[base + j] * id) + 8.5);
      const x1 = fr(fr(src[base + 16 + j] * id) + 8.5);
      // (int8_t) truncates toward zero; then MIN(15, ·) as an unsigned byte.
      const xi0 = Math.min(15, Math.trunc(x0) & 0xff);
      const xi1 = Math.min(15, Math.trunc(x1) & 0xff);
      out[b * 18 + 2 + j] = xi0 | (xi1 << 4);
    }
  }
  return out;
}

export function dequantizeQ8_0(data: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let b = 0; b < n / 32; b++) {
    const d = f16ToF32(dv.getUint16(b * 34, true));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(b * 34 + 2 + j);
  }
  return out;
}

export function dequantizeQ4_0(data: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let b = 0; b < n / 32; b++) {
    const d = f16ToF32(dv.getUint16(b * 18, true));
    for (let j = 0; j < 16; j++) {
      const q = data[b * 18 + 2 + j];
      out[b * 32 + j] = ((q & 0x0f) - 8) * d;
      out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
    }
  }
  return out;
}

/** Encode f32 values into the on-disk bytes of `type` (F32, F16, Q8_0, Q4_0). */
export function encodeTensorData(src: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case GgmlType.F32:
      return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    case GgmlType.F16:
      return encodeF16(src);
    case GgmlType.Q8_0:
      return quantizeQ8_0(src);
    case GgmlType.Q4_0:
      return quantizeQ4_0(src);
    default:
      throw new RangeError(`dajian cannot encode ggml type ${GgmlType[type] ?? type} yet`);
  }
}

/** Decode on-disk bytes of F32/F16/Q8_0/Q4_0 back to f32 (for checks and for loading dajian's own files). */
export function decodeTensorData(data: Uint8Array, type: GgmlType, n: number): Float32Array {
  switch (type) {
    case GgmlType.F32: {
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(data.subarray(0, n * 4));
      return out;
    }
    case GgmlType.F16: {
      const out = new Float32Array(n);
      const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(i * 2, true));
      return out;
    }
    case GgmlType.Q8_0:
      return dequantizeQ8_0(data, n);
    case GgmlType.Q4_0:
      return dequantizeQ4_0(data, n);
    default:
      throw new RangeError(`dajian cannot decode ggml type ${GgmlType[type] ?? type} yet`);
  }
}
