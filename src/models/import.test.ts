// Air-gapped import/export on real homes (SQLite registry on disk), and a crafted-GGUF corpus: every malformed
// header must end in a one-line DajianError — no crash, no big allocation, nothing registered, nothing left behind.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { homePaths } from "../core/home.js";
import { openHomeDb } from "../store/sqlite.js";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { exportModel, importModel, sha256File } from "./import.js";
import { ModelRegistry } from "./registry.js";

const root = mkdtempSync(join(tmpdir(), "dajian-import-"));
const model = join(root, "tiny.gguf");
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(() => {
  writeTinyLlamaGguf(model, {
    type: "Q8_0",
    dim: 64,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 128,
    contextLength: 512,
    name: "Tiny Test",
  });
});

function registered(home: string) {
  const db = openHomeDb(home);
  try {
    return new ModelRegistry(db, home).list();
  } finally {
    db.close();
  }
}

describe("models import / export", () => {
  it("imports a GGUF with its facts, exports it, and imports the export on another home", async () => {
    const homeA = join(root, "a");
    const r = await importModel(homeA, model);
    expect(r.name).toBe("tiny-test");
    expect(r.manifest).toMatchObject({
      architecture: "llama",
      quantization: "Q8_0",
      contextLength: 512,
      sha256: await sha256File(model),
    });
    expect(r.manifest.chatTemplate).toContain("<|im_start|>");
    const entry = registered(homeA).find((e) => e.name === "tiny-test")!;
    expect(entry).toMatchObject({ kind: "local", path: r.path, sha256: r.manifest.sha256 });

    const out = join(root, "usb");
    const ex = await exportModel(homeA, "tiny-test", out);
    expect(readdirSync(out).sort()).toEqual(["manifest.json", "tiny.gguf"]);
    expect(ex.manifest.sha256).toBe(r.manifest.sha256);

    const homeB = join(root, "b");
    const rb = await importModel(homeB, out, { name: "tiny-b" });
    expect(rb.manifest.sha256).toBe(r.manifest.sha256);
    expect(registered(homeB).map((e) => e.name)).toEqual(["tiny-b"]);
    // second import under the same name is refused
    await expect(importModel(homeB, out, { name: "tiny-b" })).rejects.toMatchObject({ code: "already_exists" });
  });

  it("refuses an export whose file was altered in transit, leaving nothing behind", async () => {
    const homeA = join(root, "c");
    await importModel(homeA, model, { name: "m" });
    const out = join(root, "usb2");
    await exportModel(homeA, "m", out);
    const f = join(out, "tiny.gguf");
    const b = readFileSync(f);
    b[b.length - 1] ^= 0xff; // flip one byte of tensor data
    writeFileSync(f, b);
    const homeB = join(root, "d");
    await expect(importModel(homeB, out)).rejects.toMatchObject({ code: "corrupt" });
    expect(registered(homeB)).toEqual([]);
    expect(existsSync(join(homePaths(homeB).models, "m"))).toBe(false);
    // a manifest pointing outside the folder is refused before anything is read
    const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    writeFileSync(join(out, "manifest.json"), JSON.stringify({ ...m, file: "../tiny.gguf" }));
    await expect(importModel(homeB, out)).rejects.toMatchObject({ code: "corrupt" });
  });
});

// ---- crafted GGUF corpus ---------------------------------------------------------------------------------------

class Bytes {
  parts: Buffer[] = [];
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint | number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  str(s: string, lenOverride?: bigint) {
    const d = Buffer.from(s);
    this.u64(lenOverride ?? BigInt(d.length));
    this.parts.push(d);
    return this;
  }
  raw(b: Buffer) {
    this.parts.push(b);
    return this;
  }
  buf() {
    return Buffer.concat(this.parts);
  }
}

interface Craft {
  version?: number;
  nTensors?: bigint;
  nKv?: bigint;
  kv?: (b: Bytes) => void;
  tensors?: Array<{ name: string; dims: number[]; type: number; offset: bigint; nDims?: number }>;
  dataBytes?: number;
  truncate?: number;
  magic?: string;
}

const STD_KV = (b: Bytes) => {
  b.str("general.architecture").u32(8).str("llama");
  b.str("llama.block_count").u32(4).u32(1);
};

function craft(c: Craft): Buffer {
  const tensors = c.tensors ?? [{ name: "token_embd.weight", dims: [32, 4], type: 0, offset: 0n }];
  const b = new Bytes().raw(Buffer.from(c.magic ?? "GGUF")).u32(c.version ?? 3);
  b.u64(c.nTensors ?? BigInt(tensors.length)).u64(c.nKv ?? 2n);
  (c.kv ?? STD_KV)(b);
  for (const t of tensors) {
    b.str(t.name).u32(t.nDims ?? t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  let out = b.buf();
  const pad = (32 - (out.length % 32)) % 32;
  out = Buffer.concat([out, Buffer.alloc(pad), Buffer.alloc(c.dataBytes ?? 512)]);
  return c.truncate !== undefined ? out.subarray(0, c.truncate) : out;
}

describe("crafted GGUF corpus", () => {
  const corpus: Record<string, Buffer> = {
    "empty file": Buffer.alloc(0),
    "bad magic": craft({ magic: "GGML" }),
    "version 1": craft({ version: 1 }),
    "version 99": craft({ version: 99 }),
    "truncated in header": craft({}).subarray(0, 20),
    "truncated in metadata": craft({ tensors: [], dataBytes: 0, truncate: 60 }),
    "truncated in tensor infos": craft({ truncate: 110 }),
    "huge tensor count": craft({ nTensors: 1n << 62n }),
    "huge metadata count": craft({ nKv: 0xffffffffffffn }),
    "huge key length": craft({ kv: (b) => b.str("general.architecture", 1n << 40n) }),
    "huge string value": craft({
      kv: (b) =>
        b
          .str("general.architecture")
          .u32(8)
          .str("llama", 1n << 50n),
    }),
    "huge array count": craft({
      kv: (b) =>
        b
          .str("general.architecture")
          .u32(9)
          .u32(4)
          .u64(1n << 60n),
    }),
    "nested array": craft({ kv: (b) => b.str("general.architecture").u32(9).u32(9).u64(1) }),
    "unknown value type": craft({ kv: (b) => b.str("general.architecture").u32(77).u32(0) }),
    "bad bool byte": craft({
      nKv: 1n,
      kv: (b) =>
        b
          .str("x")
          .u32(7)
          .raw(Buffer.from([7])),
    }),
    "unknown tensor type": craft({ tensors: [{ name: "t", dims: [32, 4], type: 99, offset: 0n }] }),
    "too many dims": craft({ tensors: [{ name: "t", dims: [1, 1, 1, 1, 1, 1, 1, 1, 1], type: 0, offset: 0n }] }),
    "zero dims": craft({ tensors: [{ name: "t", dims: [], type: 0, offset: 0n, nDims: 0 }] }),
    "huge dimension": craft({ tensors: [{ name: "t", dims: [2 ** 40, 2 ** 40], type: 0, offset: 0n }] }),
    "row not a block multiple": craft({ tensors: [{ name: "t", dims: [33, 4], type: 8, offset: 0n }] }),
    "offset out of range": craft({ tensors: [{ name: "t", dims: [32, 4], type: 0, offset: 1n << 40n }] }),
    "data past the end": craft({ tensors: [{ name: "t", dims: [32, 4], type: 0, offset: 448n }] }),
    "misaligned offset": craft({ tensors: [{ name: "t", dims: [8], type: 0, offset: 4n }] }),
    "overlapping tensors": craft({
      tensors: [
        { name: "a", dims: [32, 2], type: 0, offset: 0n },
        { name: "b", dims: [32, 2], type: 0, offset: 128n },
      ],
    }),
    "duplicate tensor names": craft({
      tensors: [
        { name: "a", dims: [8], type: 0, offset: 0n },
        { name: "a", dims: [8], type: 0, offset: 32n },
      ],
    }),
    "alignment not a power of two": craft({
      nKv: 3n,
      kv: (b) => {
        STD_KV(b);
        b.str("general.alignment").u32(4).u32(24);
      },
    }),
    "no architecture": craft({ nKv: 1n, kv: (b) => b.str("general.name").u32(8).str("x") }),
    "no tensors": craft({ tensors: [], dataBytes: 0 }),
  };

  it("each malformed file is a clean DajianError; nothing is registered or copied; memory stays bounded", async () => {
    const home = join(root, "fuzz");
    const rss0 = process.memoryUsage().rss;
    const results: Record<string, string> = {};
    for (const [label, bytes] of Object.entries(corpus)) {
      const f = join(root, `crafted-${label.replace(/\W+/g, "-")}.gguf`);
      writeFileSync(f, bytes);
      let err: unknown;
      try {
        await importModel(home, f, { name: "crafted" });
      } catch (e) {
        err = e;
      }
      expect(isDajianError(err), `${label}: ${String(err)}`).toBe(true);
      results[label] = (err as Error).message;
    }
    if (process.env.DAJIAN_SHOW_CRAFTED) console.log(results);
    expect(Object.keys(results)).toHaveLength(Object.keys(corpus).length);
    // each case fails for its own defect, not by accident
    const why: Record<string, RegExp> = {
      "truncated in metadata": /file ends first/,
      "truncated in tensor infos": /tensor #0 name/,
      "huge tensor count": /tensor count/,
      "huge metadata count": /metadata count/,
      "huge key length": /key #0 length/,
      "huge string value": /general\.architecture length/,
      "huge array count": /item count/,
      "unknown tensor type": /unknown tensor type/,
      "huge dimension": /more than the whole file/,
      "offset out of range": /offset/,
      "data past the end": /past the end/,
      "misaligned offset": /not aligned/,
      "overlapping tensors": /overlaps/,
      "alignment not a power of two": /power of two/,
    };
    for (const [label, re] of Object.entries(why)) expect(results[label], label).toMatch(re);
    expect(registered(home)).toEqual([]);
    expect(existsSync(join(homePaths(home).models, "crafted"))).toBe(false);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 1024 * 1024);
  });

  it("the crafted header used as the base is itself valid (so each case tests one defect)", () => {
    // same builder, no defect: accepted (import validates structure; loading is `bench model`/`serve`)
    const f = join(root, "crafted-valid.gguf");
    writeFileSync(f, craft({}));
    return importModel(join(root, "fuzz2"), f, { name: "ok" }).then((r) => {
      expect(r.manifest.architecture).toBe("llama");
      expect(r.manifest.parameters).toBe(128);
    });
  });
});
