// Writes each set's documents as real files (PDF, DOCX, HTML, Markdown, text in rotation) with the ingest
// fixtures writer, cached under bench/results/cache so reruns skip the slow PDF/DOCX generation.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BenchSet, DocSpec } from "./data.js";

export interface WrittenDocs {
  dir: string;
  files: { spec: DocSpec; path: string; bytes: number }[];
  cached: boolean;
  writeMs: number;
}

type Writer = (
  format: DocSpec["format"],
  doc: { title: string; paragraphs: string[] },
  outPath: string,
) => Promise<void> | void;

async function loadWriter(root: string): Promise<{ write: Writer; id: string }> {
  const file = join(root, "src/ingest/fixtures.ts");
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: bench:rag writes its documents with the ingest fixtures writer`);
  }
  const mod = (await import("../../src/ingest/fixtures.js")) as { writeDocumentAs: Writer };
  const id = createHash("sha1").update(readFileSync(file)).digest("hex").slice(0, 10);
  return { write: mod.writeDocumentAs, id };
}

/**
 * Cache key: the set's corpus bytes and the document plan. The writer's source is recorded in the cache but not
 * keyed (it changes often while unrelated fixtures are added); `--rewrite-docs` regenerates the files.
 */
function cacheKey(set: BenchSet, dataDir: string): string {
  const h = createHash("sha1");
  h.update(readFileSync(join(dataDir, set.name, "corpus.jsonl")));
  for (const d of set.docs) h.update(`${d.name}\u0000${d.format}\u0000`);
  return h.digest("hex").slice(0, 12);
}

export async function writeDocs(
  set: BenchSet,
  opts: { root: string; dataDir: string; cacheDir: string; rewrite?: boolean; log?: (s: string) => void },
): Promise<WrittenDocs> {
  const { write, id } = await loadWriter(opts.root);
  const key = cacheKey(set, opts.dataDir);
  const dir = join(opts.cacheDir, "docs", `${set.name}-${key}`);
  const done = join(dir, ".complete");
  const files = set.docs.map((spec) => ({ spec, path: join(dir, spec.name), bytes: 0 }));
  const t0 = performance.now();
  let cached = true;
  if (opts.rewrite || !existsSync(done)) {
    cached = false;
    // Write into a temp dir and rename when complete, so an interrupted run never leaves a partial cache.
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    let n = 0;
    for (const f of files) {
      await write(f.spec.format, { title: f.spec.title, paragraphs: f.spec.paragraphs }, join(tmp, f.spec.name));
      if (++n % 200 === 0) opts.log?.(`  wrote ${n}/${files.length} documents`);
    }
    writeFileSync(join(tmp, ".complete"), `${new Date().toISOString()} fixtures ${id}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  for (const f of files) f.bytes = statSync(f.path).size;
  return { dir, files, cached, writeMs: performance.now() - t0 };
}
