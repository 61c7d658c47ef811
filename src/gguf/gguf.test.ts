import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import {
  GgmlType,
  GgufReader,
  GgufValueType,
  GgufWriter,
  decodeTensorData,
  f16ToF32,
  f32ToF16,
  metaArray,
  metaBool,
  metaNumber,
  metaString,
  parseGguf,
  quantizeQ4_0,
  quantizeQ8_0,
} from "./index.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sampleWriter(alignment?: number): GgufWriter {
  const w = new GgufWriter({ alignment });
  w.set("u8", { type: GgufValueType.UINT8, value: 255 })
    .set("i8", { type: GgufValueType.INT8, value: -128 })
    .set("u16", { type: GgufValueType.UINT16, value: 65535 })
    .set("i16", { type: GgufValueType.INT16, value: -32768 })
    .u32("u32", 4294967295)
    .i32("i32", -2147483648)
    .f32("f32", 0.5)
    .set("f64", { type: GgufValueType.FLOAT64, value: Math.PI })
    .bool("bool", true)
    .str("str", "héllo 世界 😀")
    .u64("u64", 18446744073709551615n)
    .set("i64", { type: GgufValueType.INT64, value: -9223372036854775808n })
    .array("arr.str", GgufValueType.STRING, ["a", "", "中文"])
    .array("arr.i32", GgufValueType.INT32, [1, -2, 3])
    .array("arr.f32", GgufValueType.FLOAT32, [0.25, -1.5])
    .array("arr.bool", GgufValueType.BOOL, [true, false])
    .array("arr.empty", GgufValueType.UINT8, []);
  const a = new Float32Array(64 * 3).map((_, i) => Math.sin(i) * 3);
  w.addTensor("f32", [64, 3], a, GgmlType.F32);
  w.addTensor("f16", [64, 3], a, GgmlType.F16);
  w.addTensor("q8", [64, 3], a, GgmlType.Q8_0);
  w.addTensor("q4", [64, 3], a, GgmlType.Q4_0);
  w.addTensor("odd", [3], new Float32Array([1, 2, 3]));
  return w;
}

describe("GGUF writer + reader", () => {
  it("round-trips every value type and tensor type through a file", () => {
    const path = join(dir, "all.gguf");
    sampleWriter().write(path);
    const r = GgufReader.open(path);
    try {
      expect(r.version).toBe(3);
      expect(metaNumber(r, "u8")).toBe(255);
      expect(metaNumber(r, "i8")).toBe(-128);
      expect(metaNumber(r, "u16")).toBe(65535);
      expect(metaNumber(r, "i16")).toBe(-32768);
      expect(metaNumber(r, "u32")).toBe(4294967295);
      expect(metaNumber(r, "i32")).toBe(-2147483648);
      expect(metaNumber(r, "f32")).toBe(0.5);
      expect(metaNumber(r, "f64")).toBe(Math.PI);
      expect(metaBool(r, "bool")).toBe(true);
      expect(metaString(r, "str")).toBe("héllo 世界 😀");
      expect(r.metadata.get("u64")?.value).toBe(18446744073709551615n);
      expect(r.metadata.get("i64")?.value).toBe(-9223372036854775808n);
      expect(metaArray(r, "arr.str")).toEqual(["a", "", "中文"]);
      expect(metaArray(r, "arr.i32")).toEqual([1, -2, 3]);
      expect(metaArray(r, "arr.f32")).toEqual([0.25, -1.5]);
      expect(metaArray(r, "arr.bool")).toEqual([true, false]);
      expect(metaArray(r, "arr.empty")).toEqual([]);
      expect(() => metaString(r, "u8")).toThrow(DajianError);
      const a = new Float32Array(64 * 3).map((_, i) => Math.sin(i) * 3);
      expect(Array.from(r.tensorF32("f32"))).toEqual(Array.from(a));
      const f16 = r.tensorF32("f16");
      const q8 = r.tensorF32("q8");
      const q4 = r.tensorF32("q4");
      for (let i = 0; i < a.length; i++) {
        expect(Math.abs(f16[i] - a[i])).toBeLessThan(2e-3);
        expect(Math.abs(q8[i] - a[i])).toBeLessThan(3 / 127);
        expect(Math.abs(q4[i] - a[i])).toBeLessThan(3 / 8 + 1e-6);
      }
      expect(r.tensor("q8").size).toBe(3 * 2 * 34);
      expect(r.tensor("q4").size).toBe(3 * 2 * 18);
      for (const t of r.tensors) expect((r.dataOffset + t.offset) % 32).toBe(0);
      expect(Array.from(r.tensorF32("odd"))).toEqual([1, 2, 3]);
    } finally {
      r.close();
    }
  });

  it("honours a non-default alignment and writes it as general.alignment", () => {
    const buf = sampleWriter(64).toBuffer();
    const f = parseGguf(buf);
    expect(f.alignment).toBe(64);
    expect(metaNumber(f, "general.alignment")).toBe(64);
    for (const t of f.tensors) expect((f.dataOffset + t.offset) % 64).toBe(0);
  });

  it("rejects bad writer input with a hint", () => {
    const w = new GgufWriter();
    expect(() => w.addTensor("q", [30], new Float32Array(30), GgmlType.Q8_0)).toThrow(/multiple of 32/);
    expect(() => w.addTensor("x", [4], new Float32Array(3))).toThrow(/3 values for 4/);
    w.addTensor("x", [4], new Float32Array(4));
    expect(() => w.addTensor("x", [4], new Float32Array(4))).toThrow(/duplicate/);
    expect(() => new GgufWriter({ alignment: 24 })).toThrow(/power of two/);
    expect(() => new GgufWriter().set("k", { type: GgufValueType.UINT8, value: 256 }).toBuffer()).toThrow(
      /does not fit/,
    );
  });

  it("leaves no file behind when writing fails", () => {
    const path = join(dir, "fail.gguf");
    const w = new GgufWriter();
    w.addTensor("t", [4], () => new Uint8Array(3));
    expect(() => w.write(path)).toThrow(DajianError);
    expect(() => GgufReader.open(path)).toThrow(/cannot open/);
  });
});

describe("half precision and block quantization", () => {
  it("converts f16 with round-to-nearest-even, subnormals and overflow", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(70000)).toBe(0x7c00);
    expect(f32ToF16(2 ** -24)).toBe(0x0001);
    expect(f32ToF16(2 ** -26)).toBe(0);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    for (let h = 0; h < 0x7c00; h += 7) expect(f32ToF16(f16ToF32(h))).toBe(h);
  });

  it("quantizes Q8_0 and Q4_0 blocks as ggml's reference does", () => {
    const x = new Float32Array(32).map((_, i) => i - 10);
    const q8 = quantizeQ8_0(x);
    expect(q8.length).toBe(34);
    expect(f16ToF32(q8[0] | (q8[1] << 8))).toBeCloseTo(21 / 127, 3);
    expect(new Int8Array(q8.buffer, 2, 32)[31]).toBe(127);
    const q4 = quantizeQ4_0(x);
    expect(q4.length).toBe(18);
    // max-magnitude value 21 maps to d = -21/8 and quant 0 → the value is reproduced exactly
    expect(decodeTensorData(q4, GgmlType.Q4_0, 32)[31]).toBeCloseTo(21, 2);
    expect(Array.from(decodeTensorData(quantizeQ8_0(new Float32Array(32)), GgmlType.Q8_0, 32))).toEqual(
      new Array(32).fill(0),
    );
  });
});

describe("GGUF reader on crafted files", () => {
  const good = sampleWriter().toBuffer();
  const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

  function expectClean(bytes: Uint8Array, pattern?: RegExp): void {
    let err: unknown;
    try {
      parseGguf(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DajianError);
    expect((err as DajianError).hint).not.toBe("");
    if (pattern) expect((err as DajianError).message).toMatch(pattern);
  }

  function header(nTensors: bigint, nKv: bigint, rest: number[] = [], pad = 0): Uint8Array {
    const b = new Uint8Array(24 + rest.length + pad);
    const v = dv(b);
    v.setUint32(0, 0x46554747, true);
    v.setUint32(4, 3, true);
    v.setBigUint64(8, nTensors, true);
    v.setBigUint64(16, nKv, true);
    b.set(rest, 24);
    return b;
  }
  const u64 = (n: bigint): number[] => Array.from(new Uint8Array(new BigUint64Array([n]).buffer));
  const u32 = (n: number): number[] => Array.from(new Uint8Array(new Uint32Array([n]).buffer));
  const str = (s: string): number[] => [...u64(BigInt(Buffer.byteLength(s))), ...Buffer.from(s)];

  it("rejects bad magic, old and big-endian versions", () => {
    expectClean(new Uint8Array(10), /at least 24/);
    const b = good.slice();
    b[0] = 0;
    expectClean(b, /magic/);
    const v1 = good.slice();
    dv(v1).setUint32(4, 1, true);
    expectClean(v1, /version 1/);
    const be = good.slice();
    dv(be).setUint32(4, 3, false);
    expectClean(be, /version/);
  });

  it("bounds counts and lengths by the file size", () => {
    expectClean(header(0xffffffffffffffffn, 0n), /tensor count/);
    expectClean(header(0n, 1n << 40n), /metadata count/);
    expectClean(header(0n, 1n, str("k").slice(0, 4)), /metadata count 1 is larger/);
    expectClean(header(0n, 1n, [...str("k"), ...u32(4), 1, 2]), /needs 4 bytes/);
    expectClean(header(0n, 1n, [...u64(1n << 60n)], 8), /key #0 length/);
    // array with 2^62 items of u32
    expectClean(header(0n, 1n, [...str("a"), ...u32(9), ...u32(4), ...u64(1n << 62n)]), /item count/);
    // string value with huge length
    expectClean(header(0n, 1n, [...str("s"), ...u32(8), ...u64(1n << 50n)]), /length/);
  });

  it("rejects unknown and nested types, bad bools, bad UTF-8 and duplicates", () => {
    expectClean(header(0n, 1n, [...str("k"), ...u32(13), 0, 0, 0, 0]), /unknown value type/);
    expectClean(header(0n, 1n, [...str("k"), ...u32(9), ...u32(9), ...u64(1n)]), /nested/);
    expectClean(header(0n, 1n, [...str("k"), ...u32(9), ...u32(99), ...u64(1n)]), /unknown array item type/);
    expectClean(header(0n, 1n, [...str("k"), ...u32(7), 2]), /bool/);
    expectClean(header(0n, 1n, [...u64(2n), 0xff, 0xfe, ...u32(0), 1]), /UTF-8/);
    expectClean(header(0n, 2n, [...str("k"), ...u32(0), 1, ...str("k"), ...u32(0), 1]), /duplicate metadata/);
    expectClean(header(0n, 1n, [...str("general.alignment"), ...u32(4), ...u32(24)]), /power of two/);
    expectClean(header(0n, 1n, [...str("general.alignment"), ...u32(0), 32]), /u32/);
  });

  function tensorFile(
    infos: Array<{ name?: string; dims: bigint[]; type: number; offset: bigint; nDims?: number }>,
    dataBytes: number,
  ): Uint8Array {
    const rest: number[] = [];
    for (const t of infos) {
      rest.push(...str(t.name ?? `t${rest.length}`), ...u32(t.nDims ?? t.dims.length));
      for (const d of t.dims) rest.push(...u64(d));
      rest.push(...u32(t.type), ...u64(t.offset));
    }
    const h = header(BigInt(infos.length), 0n, rest);
    const pad = (32 - (h.length % 32)) % 32;
    return Buffer.concat([h, new Uint8Array(pad + dataBytes)]);
  }

  it("checks tensor shapes, types, offsets and overlaps", () => {
    expect(parseGguf(tensorFile([{ dims: [8n], type: 0, offset: 0n }], 32)).tensors[0].size).toBe(32);
    expectClean(tensorFile([{ dims: [8n], type: 0, offset: 0n }], 31), /past the end/);
    expectClean(tensorFile([{ dims: [], type: 0, offset: 0n, nDims: 0 }], 32), /dimensions/);
    expectClean(tensorFile([{ dims: [1n, 1n, 1n, 1n, 1n], type: 0, offset: 0n }], 32), /dimensions/);
    expectClean(tensorFile([{ dims: [8n], type: 5, offset: 0n }], 32), /unknown tensor type/);
    expectClean(tensorFile([{ dims: [30n], type: GgmlType.Q8_0, offset: 0n }], 64), /multiple of 32/);
    expectClean(tensorFile([{ dims: [8n], type: 0, offset: 16n }], 64), /aligned/);
    expectClean(tensorFile([{ dims: [1n << 40n, 1n << 40n], type: 0, offset: 0n }], 32), /more than the whole file/);
    expectClean(tensorFile([{ dims: [1n << 62n], type: 0, offset: 0n }], 32), /dim 0/);
    expectClean(
      tensorFile(
        [
          { name: "a", dims: [16n], type: 0, offset: 0n },
          { name: "b", dims: [8n], type: 0, offset: 32n },
        ],
        96,
      ),
      /overlaps/,
    );
    expectClean(
      tensorFile(
        [
          { name: "a", dims: [8n], type: 0, offset: 0n },
          { name: "a", dims: [8n], type: 0, offset: 32n },
        ],
        64,
      ),
      /duplicate tensor/,
    );
    expectClean(tensorFile([{ name: "x".repeat(64), dims: [8n], type: 0, offset: 0n }], 32), /too long/);
  });

  it("fails cleanly on every truncation and on random corruption (never another kind of error)", () => {
    const full = parseGguf(good);
    const dataEnd = full.dataOffset + Math.max(...full.tensors.map((t) => t.offset + t.size));
    for (let n = 0; n < good.length; n += Math.max(1, Math.floor(good.length / 400))) {
      let err: unknown = null;
      try {
        parseGguf(good.subarray(0, n));
      } catch (e) {
        err = e;
      }
      // Only the zero padding after the last tensor's data may be cut off.
      if (n < dataEnd) expect(err).toBeInstanceOf(DajianError);
      else expect(err).toBeNull();
    }
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    let rejected = 0;
    for (let i = 0; i < 1500; i++) {
      const b = good.slice();
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(rnd() * Math.min(b.length, 1200))] = Math.floor(rnd() * 256);
      try {
        parseGguf(b);
      } catch (e) {
        expect(e).toBeInstanceOf(DajianError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });

  it("reports a clean error for a missing file and reads a real file lazily", () => {
    expect(() => GgufReader.open(join(dir, "nope.gguf"))).toThrow(/cannot open/);
    const p = join(dir, "garbage.gguf");
    writeFileSync(p, "not a gguf at all, just text that is long enough");
    expect(() => GgufReader.open(p)).toThrow(DajianError);
  });
});
