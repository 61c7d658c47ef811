import { describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { makePdf } from "./fixtures.js";
import { parseDocumentIsolated } from "./isolate.js";

describe("parseDocumentIsolated", () => {
  it("parses in a worker and returns the same structure", async () => {
    const pdf = await makePdf([{ heading: "Isolated", paragraphs: ["Runs in a worker thread."] }]);
    const doc = await parseDocumentIsolated(pdf, "iso.pdf");
    expect(doc.format).toBe("pdf");
    expect(doc.blocks.map((b) => b.text)).toEqual(["Isolated", "Runs in a worker thread."]);
  });

  it("passes DajianErrors through and stops at the deadline", async () => {
    const err = await parseDocumentIsolated(Buffer.alloc(0), "empty.txt").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DajianError);
    expect((err as DajianError).code).toBe("invalid_input");
    const pdf = await makePdf(Array.from({ length: 20 }, (_, i) => ({ paragraphs: [`Page ${i}. `.repeat(50)] })));
    const slow = await parseDocumentIsolated(pdf, "slow.pdf", { timeoutMs: 1 }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(DajianError);
    expect((slow as DajianError).oneLine()).toMatch(/took longer than/);
  });

  it("caps the worker's memory", async () => {
    // A 3 MB text file cannot be parsed within an 8 MiB heap: the worker dies and we report it.
    const text = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i} 内容`).join("\n"));
    const err = await parseDocumentIsolated(text, "big.txt", { maxHeapMb: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DajianError);
    expect((err as DajianError).code).toBe("too_large");
    expect((err as DajianError).message).toMatch(/more than 8 MiB of memory/);
  });
});
