// safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}}
// and the raw little-endian tensor bytes. The reader trusts nothing: the header length, every shape, dtype and offset
// are checked against the file size before anything is allocated, and tensor data is read one tensor at a time.
// Sharded checkpoints (model.safetensors.index.json) are opened as one set.

import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DajianError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic.js";
import { f16ToF32, f32ToF16 } from "../gguf/index.js";

export type SafeDtype = "F32" | "F16" | "BF16";
const DTYPE_BYTES: Record<SafeDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** Dtypes that exist in the format but that dajian does not convert (named in the error). */
const KNOWN_OTHER = new Set(["F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U16", "U32"]);

/** JSON headers beyond this are refused (real checkpoints use well under 1 MiB per shard). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafeTensorInfo {
  name: string;
  dtype: SafeDtype;
  /** PyTorch order: shape[last] is contiguous. */
  shape: number[];
  /** Absolute file offset of the data. */
  start: number;
  bytes: number;
}

function corrupt(file: string, what: string): DajianError {
  return new DajianError(
    "corrupt",
    `${basename(file)} is not a valid safetensors file: ${what}`,
    "the checkpoint is damaged or truncated — download or save it again",
  );
}

/** One open .safetensors file; header parsed eagerly, tensor data read on request. */
export class SafetensorsFile {
  readonly tensors = new Map<string, SafeTensorInfo>();
  readonly metadata: Record<string, string> = {};
  readonly size: number;
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      throw new DajianError("not_found", `cannot open ${path}`, "check the checkpoint folder has this file", {
        cause: err,
      });
    }
    const f = new SafetensorsFile(path, fd);
    try {
      f.parse();
      return f;
    } catch (err) {
      f.close();
      throw err;
    }
  }

  private readAt(pos: number, len: number): Buffer {
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.fd!, buf, got, len - got, pos + got);
      if (n === 0) throw corrupt(this.path, `file ends at byte ${pos + got}`);
      got += n;
    }
    return buf;
  }

  private parse(): void {
    const p = this.path;
    if (this.size < 8) throw corrupt(p, `only ${this.size} bytes`);
    const n = this.readAt(0, 8).readBigUInt64LE(0);
    if (n > BigInt(this.size - 8)) throw corrupt(p, `header length ${n} is larger than the file`);
    if (n > BigInt(MAX_HEADER_BYTES)) throw corrupt(p, `header length ${n} exceeds ${MAX_HEADER_BYTES} bytes`);
    const hlen = Number(n);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(this.readAt(8, hlen)));
    } catch {
      throw corrupt(p, "header is not UTF-8 JSON");
    }
    if (!header || typeof header !== "object" || Array.isArray(header)) throw corrupt(p, "header is not an object");
    const dataStart = 8 + hlen;
    const dataSize = this.size - dataStart;
    const spans: Array<[number, number, string]> = [];
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (raw && typeof raw === "object")
          for (const [k, v] of Object.entries(raw)) if (typeof v === "string") this.metadata[k] = v;
        continue;
      }
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!e || typeof e !== "object") throw corrupt(p, `entry ${name} is not an object`);
      if (typeof e.dtype !== "string") throw corrupt(p, `${name} has no dtype`);
      if (!(e.dtype in DTYPE_BYTES)) {
        if (KNOWN_OTHER.has(e.dtype))
          throw new DajianError(
            "unsupported",
            `${basename(p)}: tensor ${name} has dtype ${e.dtype}`,
            "dajian converts F32, F16 and BF16 checkpoints; save the model in one of those",
          );
        throw corrupt(p, `${name} has unknown dtype ${JSON.stringify(e.dtype).slice(0, 40)}`);
      }
      const dtype = e.dtype as SafeDtype;
      const shape = e.shape;
      if (!Array.isArray(shape) || shape.length > 8 || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
        throw corrupt(p, `${name} has a bad shape`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0))
        throw corrupt(p, `${name} has bad data_offsets`);
      const [begin, end] = off as [number, number];
      if (end < begin || end > dataSize) throw corrupt(p, `${name} data [${begin}, ${end}) lies outside the file`);
      let elems = 1n;
      for (const d of shape as number[]) elems *= BigInt(d);
      if (elems * BigInt(DTYPE_BYTES[dtype]) !== BigInt(end - begin))
        throw corrupt(p, `${name}: shape [${shape.join(", ")}] × ${dtype} does not match ${end - begin} data bytes`);
      spans.push([begin, end, name]);
      this.tensors.set(name, { name, dtype, shape: shape as number[], start: dataStart + begin, bytes: end - begin });
    }
    spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let i = 1; i < spans.length; i++)
      if (spans[i][0] < spans[i - 1][1]) throw corrupt(p, `tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
  }

  /** Raw bytes of one tensor. */
  raw(name: string): Buffer {
    if (this.fd === null) throw new DajianError("invalid_input", "safetensors file is closed", "open it again");
    const t = this.tensors.get(name);
    if (!t) throw new DajianError("not_found", `tensor ${name} is not in ${basename(this.path)}`, "check the name");
    return this.readAt(t.start, t.bytes);
  }

  /** Values of one tensor as f32 (BF16 and F16 widened exactly). */
  f32(name: string): Float32Array {
    return decodeSafe(this.raw(name), this.tensors.get(name)!.dtype);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

let f16Table: Float32Array | undefined;

/** 16-bit words of `raw` without copying when aligned (little-endian host, as ggml assumes too). */
function words(raw: Uint8Array): Uint16Array {
  if (raw.byteOffset % 2 === 0) return new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  return new Uint16Array(raw.slice().buffer);
}

export function decodeSafe(raw: Uint8Array, dtype: SafeDtype): Float32Array {
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  if (dtype === "F32") {
    new Uint8Array(out.buffer).set(raw);
  } else if (dtype === "F16") {
    if (!f16Table) {
      f16Table = new Float32Array(65536);
      for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32(h);
    }
    const w = words(raw);
    for (let i = 0; i < n; i++) out[i] = f16Table[w[i]];
  } else {
    const w = words(raw);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = w[i] << 16; // bf16 is the top half of an f32
  }
  return out;
}

export function encodeSafe(values: Float32Array, dtype: SafeDtype): Uint8Array {
  if (dtype === "F32")
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  if (dtype === "F16") for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i]);
  else {
    const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) {
      const x = u[i];
      // round to nearest even; NaN stays NaN
      out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return new Uint8Array(out.buffer);
}

/** All tensors of a checkpoint folder: model.safetensors, or the shards named by model.safetensors.index.json. */
export class SafetensorsSet {
  readonly files: SafetensorsFile[] = [];
  private readonly where = new Map<string, SafetensorsFile>();

  private constructor() {}

  static openDir(dir: string, stem = "model"): SafetensorsSet {
    const set = new SafetensorsSet();
    const index = join(dir, `${stem}.safetensors.index.json`);
    const single = join(dir, `${stem}.safetensors`);
    try {
      if (existsSync(index)) set.openIndex(index);
      else if (existsSync(single)) set.add(SafetensorsFile.open(single));
      else
        throw new DajianError(
          "not_found",
          `no ${stem}.safetensors or ${stem}.safetensors.index.json in ${dir}`,
          "point at a Hugging Face checkpoint folder saved with safetensors (save_pretrained(safe_serialization=True))",
        );
      return set;
    } catch (err) {
      set.close();
      throw err;
    }
  }

  private openIndex(index: string): void {
    let map: Record<string, unknown>;
    try {
      map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
    } catch (err) {
      throw new DajianError("corrupt", `${basename(index)} is not valid JSON`, "save the checkpoint again", {
        cause: err,
      });
    }
    const shards = new Map<string, string[]>();
    for (const [tensor, file] of Object.entries(map)) {
      if (typeof file !== "string" || file !== basename(file) || !file.endsWith(".safetensors"))
        throw new DajianError("corrupt", `${basename(index)} names an unsafe shard for ${tensor}`, "fix the index");
      shards.set(file, [...(shards.get(file) ?? []), tensor]);
    }
    if (shards.size === 0) throw new DajianError("corrupt", `${basename(index)} has no weight_map`, "fix the index");
    for (const [file, names] of shards) {
      const f = SafetensorsFile.open(join(dirname(index), file));
      this.files.push(f);
      for (const n of names)
        if (!f.tensors.has(n))
          throw new DajianError("corrupt", `${file} lacks ${n}, which the index names`, "download the shard again");
      for (const n of f.tensors.keys()) if (map[n] === file) this.where.set(n, f);
    }
  }

  private add(f: SafetensorsFile): void {
    this.files.push(f);
    for (const n of f.tensors.keys()) {
      if (this.where.has(n)) throw new DajianError("corrupt", `tensor ${n} appears twice`, "fix the checkpoint");
      this.where.set(n, f);
    }
  }

  names(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  info(name: string): SafeTensorInfo | undefined {
    return this.where.get(name)?.tensors.get(name);
  }
  f32(name: string): Float32Array {
    const f = this.where.get(name);
    if (!f) throw new DajianError("not_found", `tensor ${name} is missing from the checkpoint`, "check the checkpoint");
    return f.f32(name);
  }
  close(): void {
    for (const f of this.files) f.close();
  }
}

export interface SafeTensorOut {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  /** Called once at write time (keeps big models out of memory); must return exactly the tensor's bytes. */
  data: () => Uint8Array;
}

/** Write a .safetensors file atomically, streaming tensor by tensor. Returns the byte size. */
export function writeSafetensors(
  path: string,
  tensors: SafeTensorOut[],
  metadata: Record<string, string> = {},
): number {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    sizes.push(bytes);
    off += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  // Pad the header with spaces to 8 bytes so the data is aligned, as the reference writer does.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  return writeFileAtomic(path, (put) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    put(len);
    put(json);
    tensors.forEach((t, i) => {
      const b = t.data();
      if (b.length !== sizes[i])
        throw new DajianError("internal", `tensor ${t.name}: ${b.length} bytes, not ${sizes[i]}`, "report this bug");
      put(b);
    });
  });
}
