// Uploads (ingestItems) parse in an isolated worker: a file that blows the parser's memory cap is reported
// as failed with a one-line reason, and the rest of the batch is ingested.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { KnowledgeBases } from "./kb.js";

const dir = mkdtempSync(join(tmpdir(), "dj-iso-"));
const kbs = new KnowledgeBases(dir, { embedder: null });
afterAll(async () => {
  await kbs.close();
  rmSync(dir, { recursive: true, force: true });
});

it("reports a parser over its heap cap as failed and ingests the rest", async () => {
  await kbs.create("up");
  // ~3 MB of text cannot be parsed within a 16 MiB worker heap (as in src/ingest/isolate.test.ts).
  const big = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i} 内容`).join("\n"));
  const ok = Buffer.from("# Travel\n\nEconomy class for flights under six hours.\n");
  const s = await kbs.ingestItems(
    "up",
    [
      { name: "big.txt", data: big },
      { name: "travel.md", data: ok },
    ],
    { parseHeapMb: 16 },
  );
  expect(s.added).toBe(1);
  expect(s.failed).toBe(1);
  const bad = s.files.find((f) => f.file === "big.txt");
  expect(bad?.status).toBe("failed");
  expect(bad?.reason).toMatch(/more than 16 MiB of memory/);
  expect(bad?.reason).not.toContain("\n");
  const hits = await kbs.search("up", "flights economy", { topK: 3 });
  expect(hits.results.map((r) => r.source.document)).toEqual(["travel.md"]);
}, 60_000);
