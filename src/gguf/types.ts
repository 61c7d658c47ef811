// GGUF on-disk vocabulary: value types, ggml tensor types and their block layouts.
// Numbers match ggml/include/gguf.h and ggml.h of the llama.cpp build node-llama-cpp 3.21.1 ships.

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Byte width of fixed-size scalar value types (strings and arrays are variable). */
export const SCALAR_SIZE: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

/** [elements per block, bytes per block] — from the block structs in ggml-common.h. */
export const GGML_BLOCK: Record<GgmlType, readonly [number, number]> = {
  [GgmlType.F32]: [1, 4],
  [GgmlType.F16]: [1, 2],
  [GgmlType.Q4_0]: [32, 18],
  [GgmlType.Q4_1]: [32, 20],
  [GgmlType.Q5_0]: [32, 22],
  [GgmlType.Q5_1]: [32, 24],
  [GgmlType.Q8_0]: [32, 34],
  [GgmlType.Q8_1]: [32, 36],
  [GgmlType.Q2_K]: [256, 84],
  [GgmlType.Q3_K]: [256, 110],
  [GgmlType.Q4_K]: [256, 144],
  [GgmlType.Q5_K]: [256, 176],
  [GgmlType.Q6_K]: [256, 210],
  [GgmlType.Q8_K]: [256, 292],
  [GgmlType.IQ2_XXS]: [256, 66],
  [GgmlType.IQ2_XS]: [256, 74],
  [GgmlType.IQ3_XXS]: [256, 98],
  [GgmlType.IQ1_S]: [256, 50],
  [GgmlType.IQ4_NL]: [32, 18],
  [GgmlType.IQ3_S]: [256, 110],
  [GgmlType.IQ2_S]: [256, 82],
  [GgmlType.IQ4_XS]: [256, 136],
  [GgmlType.I8]: [1, 1],
  [GgmlType.I16]: [1, 2],
  [GgmlType.I32]: [1, 4],
  [GgmlType.I64]: [1, 8],
  [GgmlType.F64]: [1, 8],
  [GgmlType.IQ1_M]: [256, 56],
  [GgmlType.BF16]: [1, 2],
  [GgmlType.TQ1_0]: [256, 54],
  [GgmlType.TQ2_0]: [256, 66],
  [GgmlType.MXFP4]: [32, 17],
  [GgmlType.NVFP4]: [64, 36],
  [GgmlType.Q1_0]: [128, 18],
  [GgmlType.Q2_0]: [64, 18],
};

export function isGgmlType(t: number): t is GgmlType {
  return Object.prototype.hasOwnProperty.call(GGML_BLOCK, t);
}

export function ggmlTypeName(t: GgmlType): string {
  return GgmlType[t] ?? `type${t}`;
}

/** Bytes of a tensor of `type` with first dimension `ne0` and `rows` rows; throws on partial blocks. */
export function tensorBytes(type: GgmlType, dims: readonly number[]): number {
  const [blk, size] = GGML_BLOCK[type];
  const ne0 = dims[0] ?? 1;
  if (ne0 % blk !== 0)
    throw new RangeError(`first dimension ${ne0} is not a multiple of ${blk} for ${ggmlTypeName(type)}`);
  let rows = 1;
  for (let i = 1; i < dims.length; i++) rows *= dims[i];
  return (ne0 / blk) * size * rows;
}

/** A metadata value as dajian holds it in memory; `type` keeps the exact on-disk width. */
export type GgufScalar =
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64; value: bigint }
  | {
      type:
        | GgufValueType.UINT8
        | GgufValueType.INT8
        | GgufValueType.UINT16
        | GgufValueType.INT16
        | GgufValueType.UINT32
        | GgufValueType.INT32
        | GgufValueType.FLOAT32
        | GgufValueType.FLOAT64;
      value: number;
    };

/** Arrays of scalars or strings. Nested arrays exist in the spec but llama.cpp rejects them, so dajian does too. */
export type GgufArray = {
  type: GgufValueType.ARRAY;
  itemType: Exclude<GgufValueType, GgufValueType.ARRAY>;
  value: ReadonlyArray<string | number | bigint | boolean>;
};

export type GgufValue = GgufScalar | GgufArray;

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the contiguous (row) dimension. */
  dims: number[];
  type: GgmlType;
  /** Offset relative to the start of the tensor-data section. */
  offset: number;
  /** Bytes of data, from type and dims. */
  size: number;
}
