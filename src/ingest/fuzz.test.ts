// Fuzzing (fast-check): random and mutated inputs never crash the parsers with anything but a DajianError,
// never run past the time limit, and every parse that succeeds chunks with valid offsets.
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { documentBytes, makeCsv, type FixtureFormat } from "./fixtures.js";
import { chunkDocument, documentText, parseDocument } from "./index.js";
import type { Block, ParsedDocument } from "./types.js";

const LIMIT_MS = 4000;
const EXT: Record<FixtureFormat, string> = {
  pdf: "pdf",
  docx: "docx",
  xlsx: "xlsx",
  pptx: "pptx",
  html: "html",
  markdown: "md",
  text: "txt",
  csv: "csv",
};

/** Parse and classify: the only acceptable outcomes are a document or a DajianError, within the limit. */
async function parseChecked(bytes: Buffer, name: string): Promise<ParsedDocument | DajianError> {
  const t0 = Date.now();
  let out: ParsedDocument | DajianError;
  try {
    out = await parseDocument(bytes, name, { timeoutMs: LIMIT_MS, maxBytes: 1 << 20, maxZipUncompressed: 16 << 20 });
  } catch (err) {
    if (!(err instanceof DajianError)) throw new Error(`${name}: non-DajianError ${String(err)}`, { cause: err });
    expect(err.oneLine()).not.toContain("\n");
    out = err;
  }
  expect(Date.now() - t0).toBeLessThan(LIMIT_MS + 3000);
  if (!(out instanceof DajianError)) {
    const full = documentText(out);
    for (const c of chunkDocument(out, { targetTokens: 64, overlapTokens: 8 })) {
      expect(c.charEnd).toBeLessThanOrEqual(full.length);
      if (c.kind === "text") expect(c.text).toBe(full.slice(c.charStart, c.charEnd));
    }
  }
  return out;
}

describe("fuzz: parsers", () => {
  const samples = new Map<FixtureFormat, Buffer>();
  beforeAll(async () => {
    const doc = {
      title: "Fuzz 测试",
      paragraphs: ["第一段：员工每年享有带薪年假。", "Second paragraph, in English.", "第三段。"],
    };
    for (const f of ["pdf", "docx", "xlsx", "pptx", "html", "markdown"] as FixtureFormat[])
      samples.set(f, await documentBytes(f, doc));
    samples.set(
      "csv",
      Buffer.from(
        makeCsv([
          ["a", "b"],
          ["1", "x,y"],
          ["2", 'q"z'],
        ]),
      ),
    );
  });

  it("random bytes under any name", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 3000 }),
        fc.constantFrom(...Object.values(EXT), "bin"),
        async (arr, ext) => {
          await parseChecked(Buffer.from(arr), `f.${ext}`);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("random bytes behind real magic numbers", async () => {
    const heads = ["%PDF-1.7\n", "PK\u0003\u0004", "<!DOCTYPE html><html><body>", "\ufeff", "# title\n"];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...heads), fc.uint8Array({ maxLength: 2000 }), async (head, arr) => {
        await parseChecked(Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(arr)]), "m.bin");
      }),
      { numRuns: 100 },
    );
  });

  it("mutated real files (byte flips, truncation, splices)", async () => {
    const mutation = fc.record({
      format: fc.constantFrom(...([...samples.keys()] as FixtureFormat[])),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      cut: fc.option(fc.double({ min: 0.05, max: 1, noNaN: true })),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ format, flips, cut }) => {
        const orig = samples.get(format)!;
        const b = Buffer.from(orig);
        for (const [pos, v] of flips) b[pos % b.length] = v;
        const bytes = cut === null ? b : b.subarray(0, Math.max(1, Math.floor(b.length * cut)));
        await parseChecked(bytes, `mut.${EXT[format]}`);
      }),
      { numRuns: 120 },
    );
  });
});

describe("fuzz: chunker invariants", () => {
  const text = fc.string({
    unit: fc.constantFrom("a", "b", " ", "。", "汉", "字", ".", "!", "\n", "Mr", "—", "😀", "|"),
    maxLength: 300,
  });
  const block: fc.Arbitrary<Block> = fc.oneof(
    fc.record({ kind: fc.constantFrom("paragraph" as const, "list_item" as const, "code" as const), text }),
    fc.record({ kind: fc.constant("heading" as const), text, level: fc.integer({ min: 1, max: 4 }) }),
  );
  it("offsets, sizes and order hold for arbitrary block sequences", () => {
    fc.assert(
      fc.property(fc.array(block, { maxLength: 20 }), fc.integer({ min: 16, max: 200 }), (blocks, target) => {
        const doc: ParsedDocument = {
          format: "text",
          blocks: blocks.filter((b) => b.text.trim() !== ""),
          needsOcrPages: [],
          warnings: [],
        };
        const full = documentText(doc);
        const chunks = chunkDocument(doc, { targetTokens: target, overlapTokens: Math.floor(target / 4) });
        let last = -1;
        for (const c of chunks) {
          expect(c.text).toBe(full.slice(c.charStart, c.charEnd));
          expect(c.charStart).toBeGreaterThan(last); // strictly advancing
          last = c.charStart;
          expect(c.tokens).toBeLessThanOrEqual(target);
        }
        // Nothing lost: every non-space character of the text is inside some chunk.
        const covered = new Uint8Array(full.length);
        for (const c of chunks) covered.fill(1, c.charStart, c.charEnd);
        const norm = (x: string) => x.replace(/\s+/g, " ").trim();
        const kept = chunks.map((c) => norm(c.text));
        for (let i = 0; i < full.length;) {
          if (covered[i]) {
            i++;
            continue;
          }
          let j = i;
          while (j < full.length && !covered[j]) j++;
          const run = norm(full.slice(i, j));
          // Only exact-duplicate chunks are dropped, so uncovered text must repeat inside a kept chunk.
          if (run !== "") expect(kept.some((k) => k.includes(run))).toBe(true);
          i = j;
        }
      }),
      { numRuns: 300 },
    );
  });
});
