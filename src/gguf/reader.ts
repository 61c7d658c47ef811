// GGUF reader that trusts nothing in the file: every count, length, offset, type and shape is checked against the
// bytes that actually exist before anything is allocated (crafted headers were the source of several llama.cpp
// CVEs). Metadata and tensor infos are read eagerly; tensor data only on request.

import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { DajianError } from "../core/errors.js";
import { decodeTensorData } from "./quant.js";
import {
  GGML_BLOCK,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  GgufValueType,
  SCALAR_SIZE,
  ggmlTypeName,
  isGgmlType,
  type GgufTensorInfo,
  type GgufValue,
} from "./types.js";

const MAX_NAME = 64; // GGML_MAX_NAME, including the terminating zero
const MAX_DIMS = 4;

interface ByteSource {
  readonly size: number;
  /** Exactly `len` bytes at `pos`; caller has checked the range. */
  read(pos: number, len: number): Uint8Array;
}

class BufferSource implements ByteSource {
  constructor(private readonly buf: Uint8Array) {}
  get size(): number {
    return this.buf.length;
  }
  read(pos: number, len: number): Uint8Array {
    return this.buf.subarray(pos, pos + len);
  }
}

class FileSource implements ByteSource {
  readonly size: number;
  private winPos = 0;
  private win = new Uint8Array(0);
  constructor(readonly fd: number) {
    this.size = fstatSync(fd).size;
  }
  read(pos: number, len: number): Uint8Array {
    if (pos >= this.winPos && pos + len <= this.winPos + this.win.length) {
      return this.win.subarray(pos - this.winPos, pos - this.winPos + len);
    }
    const want = Math.min(Math.max(len, 1 << 20), this.size - pos);
    const buf = new Uint8Array(want);
    let got = 0;
    while (got < want) {
      const n = readSync(this.fd, buf, got, want - got, pos + got);
      if (n === 0) throw corrupt(`file shrank while reading at byte ${pos + got}`);
      got += n;
    }
    this.win = buf;
    this.winPos = pos;
    return buf.subarray(0, len);
  }
}

function corrupt(what: string): DajianError {
  return new DajianError(
    "corrupt",
    `not a valid GGUF file: ${what}`,
    "the file is damaged, truncated or not a GGUF model — export or download it again",
  );
}

/** Bounds-checked little-endian cursor. */
class Cursor {
  pos = 0;
  private readonly dec = new TextDecoder("utf-8", { fatal: true });
  constructor(private readonly src: ByteSource) {}
  get remaining(): number {
    return this.src.size - this.pos;
  }
  private take(n: number, what: string): DataView {
    if (n > this.remaining) throw corrupt(`${what} needs ${n} bytes at offset ${this.pos}, file ends first`);
    const b = this.src.read(this.pos, n);
    this.pos += n;
    return new DataView(b.buffer, b.byteOffset, n);
  }
  u8(w: string): number {
    return this.take(1, w).getUint8(0);
  }
  u32(w: string): number {
    return this.take(4, w).getUint32(0, true);
  }
  /** u64 that must fit a JS number and be ≤ `max` (what the rest of the file can hold). */
  count(w: string, max: number): number {
    const v = this.take(8, w).getBigUint64(0, true);
    if (v > BigInt(max)) throw corrupt(`${w} ${v} is larger than the file allows (at most ${max})`);
    return Number(v);
  }
  str(w: string): string {
    const len = this.count(`${w} length`, this.remaining - 8);
    const bytes = this.src.read(this.pos, len);
    this.pos += len;
    try {
      return this.dec.decode(bytes);
    } catch {
      throw corrupt(`${w} is not valid UTF-8`);
    }
  }
  scalar(type: GgufValueType, w: string): string | number | bigint | boolean {
    switch (type) {
      case GgufValueType.UINT8:
        return this.take(1, w).getUint8(0);
      case GgufValueType.INT8:
        return this.take(1, w).getInt8(0);
      case GgufValueType.UINT16:
        return this.take(2, w).getUint16(0, true);
      case GgufValueType.INT16:
        return this.take(2, w).getInt16(0, true);
      case GgufValueType.UINT32:
        return this.take(4, w).getUint32(0, true);
      case GgufValueType.INT32:
        return this.take(4, w).getInt32(0, true);
      case GgufValueType.FLOAT32:
        return this.take(4, w).getFloat32(0, true);
      case GgufValueType.FLOAT64:
        return this.take(8, w).getFloat64(0, true);
      case GgufValueType.UINT64:
        return this.take(8, w).getBigUint64(0, true);
      case GgufValueType.INT64:
        return this.take(8, w).getBigInt64(0, true);
      case GgufValueType.BOOL: {
        const b = this.take(1, w).getUint8(0);
        if (b > 1) throw corrupt(`${w}: bool byte ${b}`);
        return b === 1;
      }
      case GgufValueType.STRING:
        return this.str(w);
      default:
        throw corrupt(`${w}: unknown value type ${type as number}`);
    }
  }
}

export interface GgufFile {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute byte offset of the tensor-data section. */
  dataOffset: number;
  fileSize: number;
}

function parse(src: ByteSource): GgufFile {
  const c = new Cursor(src);
  if (src.size < 24) throw corrupt(`only ${src.size} bytes, a GGUF header has at least 24`);
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) throw corrupt(`magic is 0x${magic.toString(16)}, expected "GGUF"`);
  const version = c.u32("version");
  if (version === 1) {
    throw new DajianError("unsupported", "GGUF version 1 is not supported", "convert it with a current llama.cpp");
  }
  if (version !== 2 && version !== 3) {
    const hint = version > 0xffff ? "it looks big-endian; use a little-endian GGUF" : "use a GGUF v2/v3 file";
    throw new DajianError("unsupported", `GGUF version ${version} is not supported`, hint);
  }
  // Every tensor info needs ≥ 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
  const nTensors = c.count("tensor count", Math.floor((src.size - 24) / 32));
  // Every key/value needs ≥ 8 (key len) + 4 (type) + 1 (smallest value) bytes.
  const nKv = c.count("metadata count", Math.floor((src.size - 24) / 13));

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`key #${i}`);
    if (metadata.has(key)) throw corrupt(`duplicate metadata key ${key}`);
    const type = c.u32(`type of ${key}`) as GgufValueType;
    if (type === GgufValueType.ARRAY) {
      const itemType = c.u32(`item type of ${key}`) as GgufValueType;
      if (itemType === GgufValueType.ARRAY) throw corrupt(`${key}: nested arrays are not supported`);
      const itemMin = itemType === GgufValueType.STRING ? 8 : SCALAR_SIZE[itemType];
      if (itemMin === undefined) throw corrupt(`${key}: unknown array item type ${itemType}`);
      const n = c.count(`${key} item count`, Math.floor((c.remaining - 8) / itemMin));
      const items: Array<string | number | bigint | boolean> = new Array(n);
      for (let j = 0; j < n; j++) items[j] = c.scalar(itemType, key);
      metadata.set(key, { type, itemType, value: items } as GgufValue);
    } else {
      if (type !== GgufValueType.STRING && SCALAR_SIZE[type] === undefined) {
        throw corrupt(`${key}: unknown value type ${type}`);
      }
      metadata.set(key, { type, value: c.scalar(type, key) } as GgufValue);
    }
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    if (al.type !== GgufValueType.UINT32) throw corrupt("general.alignment is not a u32");
    const a = al.value;
    if (a === 0 || (a & (a - 1)) !== 0) throw corrupt(`general.alignment ${a} is not a power of two`);
    alignment = a;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`tensor #${i} name`);
    if (Buffer.byteLength(name) >= MAX_NAME) throw corrupt(`tensor name "${name.slice(0, 80)}" is too long`);
    if (names.has(name)) throw corrupt(`duplicate tensor ${name}`);
    names.add(name);
    const nDims = c.u32(`${name} dims`);
    if (nDims < 1 || nDims > MAX_DIMS) throw corrupt(`${name} has ${nDims} dimensions (1–${MAX_DIMS} allowed)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.count(`${name} dim ${d}`, Number.MAX_SAFE_INTEGER));
    const type = c.u32(`${name} type`);
    if (!isGgmlType(type)) throw corrupt(`${name} has unknown tensor type ${type}`);
    const [blk, bsize] = GGML_BLOCK[type];
    if (dims[0] % blk !== 0)
      throw corrupt(`${name}: row of ${dims[0]} is not a multiple of ${blk} (${ggmlTypeName(type)})`);
    // Size in BigInt so absurd shapes cannot overflow into something plausible.
    let elems = 1n;
    for (const d of dims) elems *= BigInt(d);
    const size = (elems / BigInt(blk)) * BigInt(bsize);
    if (size > BigInt(src.size)) throw corrupt(`${name} would need ${size} bytes, more than the whole file`);
    const offset = c.count(`${name} offset`, src.size);
    if (offset % alignment !== 0) throw corrupt(`${name} offset ${offset} is not aligned to ${alignment}`);
    tensors.push({ name, dims, type: type as GgmlType, offset, size: Number(size) });
  }

  let dataOffset = c.pos;
  if (tensors.length > 0) dataOffset += (alignment - (dataOffset % alignment)) % alignment;
  const dataSize = src.size - dataOffset;
  if (dataSize < 0) throw corrupt("file ends inside the alignment padding");
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const t of byOffset) {
    if (t.offset < end) throw corrupt(`tensor ${t.name} overlaps the tensor before it`);
    if (t.offset + t.size > dataSize) throw corrupt(`tensor ${t.name} data runs past the end of the file`);
    end = t.offset + t.size;
  }
  return { version, alignment, metadata, tensors, dataOffset, fileSize: src.size };
}

/** Parse a GGUF held in memory (tests, fuzzing, small files). */
export function parseGguf(buf: Uint8Array): GgufFile {
  return parse(new BufferSource(buf));
}

/** An open GGUF file: header parsed, tensor data read on demand. Close it (or `using`) to release the handle. */
export class GgufReader implements GgufFile {
  readonly version: number;
  readonly alignment: number;
  readonly metadata: Map<string, GgufValue>;
  readonly tensors: GgufTensorInfo[];
  readonly dataOffset: number;
  readonly fileSize: number;
  private fd: number | null;

  private constructor(fd: number, file: GgufFile) {
    this.fd = fd;
    this.version = file.version;
    this.alignment = file.alignment;
    this.metadata = file.metadata;
    this.tensors = file.tensors;
    this.dataOffset = file.dataOffset;
    this.fileSize = file.fileSize;
  }

  static open(path: string): GgufReader {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      throw new DajianError("not_found", `cannot open ${path}`, "check the path to the GGUF file", { cause: err });
    }
    try {
      return new GgufReader(fd, parse(new FileSource(fd)));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new DajianError("not_found", `tensor ${name} is not in this GGUF`, "list tensors with the reader");
    return t;
  }

  /** Raw on-disk bytes of a tensor. */
  tensorBytes(nameOrInfo: string | GgufTensorInfo): Uint8Array {
    if (this.fd === null) throw new DajianError("invalid_input", "GGUF reader is closed", "open the file again");
    const t = typeof nameOrInfo === "string" ? this.tensor(nameOrInfo) : nameOrInfo;
    const buf = new Uint8Array(t.size);
    let got = 0;
    while (got < t.size) {
      const n = readSync(this.fd, buf, got, t.size - got, this.dataOffset + t.offset + got);
      if (n === 0) throw corrupt(`file shrank while reading ${t.name}`);
      got += n;
    }
    return buf;
  }

  /** Tensor values as f32 (F32, F16, Q8_0, Q4_0). */
  tensorF32(name: string): Float32Array {
    const t = this.tensor(name);
    const n = t.dims.reduce((a, b) => a * b, 1);
    return decodeTensorData(this.tensorBytes(t), t.type, n);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Read only the header (metadata + tensor infos) of a GGUF file. */
export function readGgufHeader(path: string): GgufFile {
  const r = GgufReader.open(path);
  try {
    const { version, alignment, metadata, tensors, dataOffset, fileSize } = r;
    return { version, alignment, metadata, tensors, dataOffset, fileSize };
  } finally {
    r.close();
  }
}

// ---- typed metadata access -------------------------------------------------------------------------------------

function wrongType(key: string, want: string): DajianError {
  return new DajianError("corrupt", `GGUF metadata ${key} is not ${want}`, "the model file is malformed; re-export it");
}

export function metaString(file: Pick<GgufFile, "metadata">, key: string): string | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.STRING) throw wrongType(key, "a string");
  return v.value;
}

/** Any integer or float scalar as a number (64-bit integers must be safe integers). */
export function metaNumber(file: Pick<GgufFile, "metadata">, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v.value === "number") return v.value;
  if (typeof v.value === "bigint") {
    if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < -BigInt(Number.MAX_SAFE_INTEGER))
      throw wrongType(key, "a safe integer");
    return Number(v.value);
  }
  throw wrongType(key, "a number");
}

export function metaBool(file: Pick<GgufFile, "metadata">, key: string): boolean | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.BOOL) throw wrongType(key, "a bool");
  return v.value;
}

export function metaArray(
  file: Pick<GgufFile, "metadata">,
  key: string,
): ReadonlyArray<string | number | bigint | boolean> | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.ARRAY) throw wrongType(key, "an array");
  return v.value;
}

export function metaStrings(file: Pick<GgufFile, "metadata">, key: string): string[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.ARRAY || v.itemType !== GgufValueType.STRING)
    throw wrongType(key, "an array of strings");
  return v.value as string[];
}

export function metaNumbers(file: Pick<GgufFile, "metadata">, key: string): number[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.ARRAY || v.value.some((x) => typeof x !== "number"))
    throw wrongType(key, "an array of numbers");
  return v.value as number[];
}
