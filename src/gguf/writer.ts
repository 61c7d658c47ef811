// GGUF writer: metadata of every value type, tensor infos, alignment, tensor data in F32/F16/Q8_0/Q4_0 (or raw
// bytes of any type). Files are written to a temporary name and renamed, so a crash never leaves half a model.

import { writeFileAtomic } from "../core/atomic.js";
import { DajianError } from "../core/errors.js";
import { encodeTensorData } from "./quant.js";
import {
  GGML_BLOCK,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgmlType,
  GgufValueType,
  ggmlTypeName,
  tensorBytes,
  type GgufArray,
  type GgufValue,
} from "./types.js";

type TensorSource = Uint8Array | (() => Uint8Array);

interface PendingTensor {
  name: string;
  dims: number[];
  type: GgmlType;
  size: number;
  source: TensorSource;
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: bigint | number): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: bigint | number): void {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(out: ByteSink, type: GgufValueType, v: unknown, key: string): void {
  const bad = (): never => {
    throw new DajianError(
      "invalid_input",
      `GGUF key ${key}: value ${String(v)} does not fit ${GgufValueType[type]}`,
      "pass a value of the declared type",
    );
  };
  const int = (lo: number, hi: number): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) bad();
    return v as number;
  };
  switch (type) {
    case GgufValueType.UINT8:
      return out.u8(int(0, 0xff));
    case GgufValueType.INT8:
      return out.i8(int(-0x80, 0x7f));
    case GgufValueType.UINT16:
      return out.u16(int(0, 0xffff));
    case GgufValueType.INT16:
      return out.i16(int(-0x8000, 0x7fff));
    case GgufValueType.UINT32:
      return out.u32(int(0, 0xffffffff));
    case GgufValueType.INT32:
      return out.i32(int(-0x80000000, 0x7fffffff));
    case GgufValueType.FLOAT32:
      if (typeof v !== "number") bad();
      return out.f32(v as number);
    case GgufValueType.FLOAT64:
      if (typeof v !== "number") bad();
      return out.f64(v as number);
    case GgufValueType.BOOL:
      if (typeof v !== "boolean") bad();
      return out.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      if (typeof v !== "string") bad();
      return out.str(v as string);
    case GgufValueType.UINT64: {
      const b = typeof v === "bigint" ? v : typeof v === "number" && Number.isInteger(v) ? BigInt(v) : bad();
      if (b < 0n || b > 0xffffffffffffffffn) bad();
      return out.u64(b);
    }
    case GgufValueType.INT64: {
      const b = typeof v === "bigint" ? v : typeof v === "number" && Number.isInteger(v) ? BigInt(v) : bad();
      if (b < -(1n << 63n) || b >= 1n << 63n) bad();
      return out.i64(b);
    }
    default:
      bad();
  }
}

export interface GgufWriterOptions {
  /** Tensor data alignment; written as general.alignment when not the default 32. Power of two. */
  alignment?: number;
}

export class GgufWriter {
  readonly alignment: number;
  private readonly kv = new Map<string, GgufValue>();
  private readonly tensors: PendingTensor[] = [];
  private readonly names = new Set<string>();

  constructor(opts: GgufWriterOptions = {}) {
    const a = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0 || a > 0x10000) {
      throw new DajianError("invalid_input", `GGUF alignment ${a} is not a power of two`, "use 32 (the default)");
    }
    this.alignment = a;
    if (a !== GGUF_DEFAULT_ALIGNMENT) this.set("general.alignment", { type: GgufValueType.UINT32, value: a });
  }

  /** Set (or replace) a metadata key; insertion order is kept in the file. */
  set(key: string, value: GgufValue): this {
    if (!key) throw new DajianError("invalid_input", "GGUF metadata key is empty", "give every key a name");
    this.kv.set(key, value);
    return this;
  }
  str(key: string, value: string): this {
    return this.set(key, { type: GgufValueType.STRING, value });
  }
  u32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.UINT32, value });
  }
  i32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.INT32, value });
  }
  f32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.FLOAT32, value });
  }
  bool(key: string, value: boolean): this {
    return this.set(key, { type: GgufValueType.BOOL, value });
  }
  u64(key: string, value: bigint | number): this {
    return this.set(key, { type: GgufValueType.UINT64, value: BigInt(value) });
  }
  array(key: string, itemType: GgufArray["itemType"], value: GgufArray["value"]): this {
    return this.set(key, { type: GgufValueType.ARRAY, itemType, value });
  }
  has(key: string): boolean {
    return this.kv.has(key);
  }

  /**
   * Add a tensor. `dims` in ggml order (dims[0] contiguous). Float32 data is encoded to `type`; a Uint8Array is taken
   * as already-encoded bytes of `type`; a function is called at write time (keeps big models out of memory).
   */
  addTensor(name: string, dims: number[], data: Float32Array | TensorSource, type: GgmlType = GgmlType.F32): this {
    if (this.names.has(name))
      throw new DajianError("invalid_input", `duplicate tensor ${name}`, "name each tensor once");
    if (Buffer.byteLength(name) >= 64) {
      throw new DajianError(
        "invalid_input",
        `tensor name ${name} is 64 bytes or longer`,
        "ggml limits names to 63 bytes",
      );
    }
    if (dims.length < 1 || dims.length > 4 || dims.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new DajianError("invalid_input", `tensor ${name}: bad shape [${dims.join(", ")}]`, "use 1–4 positive dims");
    }
    const [blk] = GGML_BLOCK[type];
    if (dims[0] % blk !== 0) {
      throw new DajianError(
        "invalid_input",
        `tensor ${name}: first dimension ${dims[0]} is not a multiple of ${blk}, required by ${ggmlTypeName(type)}`,
        "keep such tensors in F32/F16 or pick dimensions divisible by the block size",
      );
    }
    const size = tensorBytes(type, dims);
    const n = dims.reduce((a, b) => a * b, 1);
    let source: TensorSource;
    if (data instanceof Float32Array) {
      if (data.length !== n) {
        throw new DajianError(
          "invalid_input",
          `tensor ${name}: ${data.length} values for ${n} elements`,
          "fix the shape",
        );
      }
      source = type === GgmlType.F32 ? new Uint8Array(data.slice().buffer) : encodeTensorData(data, type);
    } else {
      source = data;
    }
    if (source instanceof Uint8Array && source.length !== size) {
      throw new DajianError(
        "invalid_input",
        `tensor ${name}: ${source.length} bytes, expected ${size}`,
        "fix the data",
      );
    }
    this.names.add(name);
    this.tensors.push({ name, dims: dims.slice(), type, size, source });
    return this;
  }

  private header(): { header: Uint8Array; offsets: number[] } {
    const out = new ByteSink();
    out.u32(GGUF_MAGIC);
    out.u32(GGUF_VERSION);
    out.u64(this.tensors.length);
    out.u64(this.kv.size);
    for (const [key, v] of this.kv) {
      out.str(key);
      out.u32(v.type);
      if (v.type === GgufValueType.ARRAY) {
        if ((v.itemType as number) === GgufValueType.ARRAY) {
          throw new DajianError("unsupported", `GGUF key ${key}: nested arrays`, "llama.cpp cannot read them; flatten");
        }
        out.u32(v.itemType);
        out.u64(v.value.length);
        for (const item of v.value) writeScalar(out, v.itemType, item, key);
      } else {
        writeScalar(out, v.type, v.value, key);
      }
    }
    const offsets: number[] = [];
    let off = 0;
    for (const t of this.tensors) {
      out.str(t.name);
      out.u32(t.dims.length);
      for (const d of t.dims) out.u64(d);
      out.u32(t.type);
      out.u64(off);
      offsets.push(off);
      off += t.size;
      off += (this.alignment - (off % this.alignment)) % this.alignment;
    }
    out.pad(this.alignment);
    return { header: out.result(), offsets };
  }

  /** Write the file atomically (temporary file, fsync, rename). Returns the byte size. */
  write(path: string): number {
    const { header } = this.header();
    return writeFileAtomic(path, (put) => {
      put(header);
      const zeros = new Uint8Array(this.alignment);
      for (const t of this.tensors) {
        const bytes = typeof t.source === "function" ? t.source() : t.source;
        if (bytes.length !== t.size) {
          throw new DajianError(
            "internal",
            `tensor ${t.name}: producer gave ${bytes.length} bytes, not ${t.size}`,
            "report this bug",
          );
        }
        put(bytes);
        const pad = (this.alignment - (t.size % this.alignment)) % this.alignment;
        if (pad) put(zeros.subarray(0, pad));
      }
    });
  }

  /** The whole file in memory (small models and tests). */
  toBuffer(): Uint8Array {
    const { header } = this.header();
    const parts: Uint8Array[] = [header];
    for (const t of this.tensors) {
      parts.push(typeof t.source === "function" ? t.source() : t.source);
      const pad = (this.alignment - (t.size % this.alignment)) % this.alignment;
      if (pad) parts.push(new Uint8Array(pad));
    }
    // A plain Uint8Array (not a Buffer), so that .slice() copies as callers expect.
    return new Uint8Array(Buffer.concat(parts));
  }
}
