// `npm run bench:data [-- --mb 50]`: throughput of `data clean|dedup|stats` on a generated zh/en corpus with
// planted exact and near duplicates, dedup precision/recall against the plant, and peak RSS. No baseline tool
// exists offline (datasketch etc. are Python packages not installed here), so this prints dajian's own figures.
import { createWriteStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanCorpus, dedupCorpus } from "../src/data/pipeline.js";
import { corpusStats } from "../src/data/stats.js";

const mb = Number(process.argv[process.argv.indexOf("--mb") + 1]) || 50;
const dir = mkdtempSync(join(tmpdir(), "dajian-bench-data-"));

let st = 12345;
const rnd = () => ((st = (Math.imul(st, 1103515245) + 12345) >>> 0), st / 4294967296);
const word = () =>
  rnd() < 0.3
    ? String.fromCharCode(0x4e00 + Math.floor(rnd() * 3000), 0x4e00 + Math.floor(rnd() * 3000))
    : Array.from({ length: 3 + Math.floor(rnd() * 6) }, () => String.fromCharCode(97 + Math.floor(rnd() * 26))).join(
        "",
      );

async function generate(path: string): Promise<{ docs: number; planted: number }> {
  const w = createWriteStream(path);
  let bytes = 0;
  let docs = 0;
  let planted = 0;
  const recent: string[][] = [];
  while (bytes < mb * 1e6) {
    let words: string[];
    if (recent.length > 10 && rnd() < 0.1) {
      // near duplicate of a recent document: 2 % of its words replaced
      words = [...recent[Math.floor(rnd() * recent.length)]];
      for (let k = 0; k < words.length / 50; k++) words[Math.floor(rnd() * words.length)] = word();
      planted++;
    } else {
      words = Array.from({ length: 150 + Math.floor(rnd() * 300) }, word);
      recent.push(words);
      if (recent.length > 200) recent.shift();
    }
    const line = JSON.stringify({ text: words.join(" ") }) + "\n";
    bytes += Buffer.byteLength(line);
    docs++;
    if (!w.write(line)) await new Promise<void>((r) => w.once("drain", () => r()));
  }
  await new Promise<void>((r) => w.end(() => r()));
  return { docs, planted };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, (performance.now() - t) / 1000];
}

try {
  const inp = join(dir, "corpus.jsonl");
  const g = await generate(inp);
  const size = statSync(inp).size / 1e6;
  const [c, tc] = await timed(() => cleanCorpus({ files: [inp] }, join(dir, "clean.jsonl"), { pii: true }));
  const [d, td] = await timed(() => dedupCorpus({ files: [inp] }, join(dir, "dedup.jsonl")));
  const [s, ts] = await timed(() => corpusStats({ files: [inp] }, { dedup: false }));
  const rows = [
    ["clean (+PII)", tc, `${c.kept}/${c.read} kept`],
    ["dedup (exact+MinHash)", td, `${d.near} near, ${d.exact} exact of ${g.planted} planted`],
    ["stats", ts, `${s.documents} docs, ${s.characters} chars`],
  ] as const;
  process.stdout.write(`corpus: ${size.toFixed(1)} MB, ${g.docs} documents, ${g.planted} planted near duplicates\n\n`);
  process.stdout.write(
    `${"step".padEnd(24)}${"seconds".padStart(9)}${"MB/s".padStart(8)}${"docs/s".padStart(10)}  result\n`,
  );
  for (const [name, t, note] of rows)
    process.stdout.write(
      `${name.padEnd(24)}${t.toFixed(1).padStart(9)}${(size / t).toFixed(1).padStart(8)}${Math.round(g.docs / t)
        .toString()
        .padStart(10)}  ${note}\n`,
    );
  // Recall against the plant (a planted copy can also be caught as exact when 2 % edits hit identical words).
  const found = d.near + d.exact;
  process.stdout.write(
    `\ndedup recall ≈ ${((Math.min(found, g.planted) / g.planted) * 100).toFixed(1)} % (found ${found} of ${g.planted}; extra finds would be false positives: ${Math.max(0, found - g.planted)})\n`,
  );
  process.stdout.write(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
