// safetensors reader/writer: exact round trips (F32, F16, BF16 with round-to-nearest-even), sharded sets, and a
// crafted-file corpus that must fail with one-line errors before any large allocation.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { SafetensorsFile, SafetensorsSet, decodeSafe, encodeSafe, writeSafetensors } from "./safetensors.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file from a raw JSON header (string or object) and data bytes, as an attacker would write it. */
function crafted(name: string, header: unknown, data = new Uint8Array(0), lenOverride?: bigint): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

describe("safetensors", () => {
  it("round-trips F32, F16 and BF16 tensors with metadata and 8-byte aligned data", () => {
    const v = Float32Array.from([0, 1, -2.5, 3.14159, 1e-3, -65504, 1 / 3, 100]);
    const p = join(dir, "rt.safetensors");
    writeSafetensors(
      p,
      (["F32", "F16", "BF16"] as const).map((dtype) => ({
        name: `t.${dtype}`,
        dtype,
        shape: [2, 4],
        data: () => encodeSafe(v, dtype),
      })),
      { format: "pt" },
    );
    const f = SafetensorsFile.open(p);
    try {
      expect(f.metadata).toEqual({ format: "pt" });
      expect([...f.f32("t.F32")]).toEqual([...v]);
      expect(f.tensors.get("t.F16")).toMatchObject({ dtype: "F16", shape: [2, 4], bytes: 16 });
      f.f32("t.F16").forEach((x, i) => expect(Math.abs(x - v[i])).toBeLessThanOrEqual(Math.abs(v[i]) * 1e-3));
      f.f32("t.BF16").forEach((x, i) => expect(Math.abs(x - v[i])).toBeLessThanOrEqual(Math.abs(v[i]) * 4e-3));
      expect((f.tensors.get("t.F32")!.start - 8) % 8).toBe(0);
    } finally {
      f.close();
    }
  });

  it("rounds BF16 to nearest even (1 + 2^-8 ties down, 1 + 3·2^-8 ties up) and keeps NaN", () => {
    const v = Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, -0]);
    const back = decodeSafe(encodeSafe(v, "BF16"), "BF16");
    expect(back[0]).toBe(1);
    expect(back[1]).toBe(1 + 2 ** -6);
    expect(Number.isNaN(back[2])).toBe(true);
    expect(Object.is(back[3], -0)).toBe(true);
  });

  it("opens a sharded checkpoint through model.safetensors.index.json", () => {
    const d = join(dir, "sharded");
    mkdirSync(d);
    const one = new Float32Array([1, 2]);
    writeSafetensors(join(d, "model-00001-of-00002.safetensors"), [
      { name: "a", dtype: "F32", shape: [2], data: () => new Uint8Array(one.buffer) },
    ]);
    writeSafetensors(join(d, "model-00002-of-00002.safetensors"), [
      { name: "b", dtype: "F32", shape: [1, 2], data: () => new Uint8Array(one.buffer) },
    ]);
    const index = { weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } };
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(index));
    const s = SafetensorsSet.openDir(d);
    expect(s.names().sort()).toEqual(["a", "b"]);
    expect([...s.f32("b")]).toEqual([1, 2]);
    s.close();
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../../etc/passwd" } }));
    expect(() => SafetensorsSet.openDir(d)).toThrow(/unsafe shard/);
    writeFileSync(
      join(d, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { c: "model-00001-of-00002.safetensors" } }),
    );
    expect(() => SafetensorsSet.openDir(d)).toThrow(/lacks c, which the index names/);
  });

  it("rejects a crafted corpus cleanly (truncated, huge header, bad offsets, overlaps, bad dtypes)", () => {
    const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    const eight = new Uint8Array(8);
    const corpus: Array<[string, string, RegExp, string]> = [
      ["empty", crafted("empty", "", new Uint8Array(0), 0n), /not UTF-8 JSON/, "corrupt"],
      ["short", (writeFileSync(join(dir, "short"), "abc"), join(dir, "short")), /only 3 bytes/, "corrupt"],
      ["huge header", crafted("huge", ok, eight, 1n << 62n), /header length \d+ is larger than the file/, "corrupt"],
      ["truncated data", crafted("trunc", ok, new Uint8Array(4)), /lies outside the file/, "corrupt"],
      ["not json", crafted("nojson", "{nope", eight), /not UTF-8 JSON/, "corrupt"],
      ["array header", crafted("arr", [1, 2], eight), /not an object/, "corrupt"],
      [
        "end < begin",
        crafted("rev", { w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, eight),
        /outside the file/,
        "corrupt",
      ],
      [
        "huge offset",
        crafted("off", { w: { dtype: "F32", shape: [2], data_offsets: [2 ** 52, 2 ** 52 + 8] } }, eight),
        /outside the file/,
        "corrupt",
      ],
      [
        "unsafe offset",
        crafted("unsafe", { w: { dtype: "F32", shape: [2], data_offsets: [0, 1e300] } }, eight),
        /bad data_offsets/,
        "corrupt",
      ],
      [
        "shape/bytes",
        crafted("shape", { w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, eight),
        /does not match 8 data bytes/,
        "corrupt",
      ],
      [
        "huge shape",
        crafted("hshape", { w: { dtype: "F32", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, eight),
        /does not match/,
        "corrupt",
      ],
      [
        "negative dim",
        crafted("neg", { w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, eight),
        /bad shape/,
        "corrupt",
      ],
      [
        "overlap",
        crafted(
          "overlap",
          {
            a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            b: { dtype: "F16", shape: [2], data_offsets: [4, 8] },
          },
          eight,
        ),
        /overlap/,
        "corrupt",
      ],
      [
        "bad dtype",
        crafted("dtype", { w: { dtype: "F99", shape: [2], data_offsets: [0, 8] } }, eight),
        /unknown dtype/,
        "corrupt",
      ],
      [
        "int dtype",
        crafted("i64", { w: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, eight),
        /dtype I64/,
        "unsupported",
      ],
      ["no dtype", crafted("nodt", { w: { shape: [2], data_offsets: [0, 8] } }, eight), /no dtype/, "corrupt"],
    ];
    for (const [name, path, re, code] of corpus) {
      let err: unknown;
      try {
        SafetensorsFile.open(path).close();
      } catch (e) {
        err = e;
      }
      expect(isDajianError(err, code as never), `${name}: ${String(err)}`).toBe(true);
      expect((err as Error).message, name).toMatch(re);
      expect((err as Error).message).not.toContain("\n");
    }
  });
});
