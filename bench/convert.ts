// npm run bench:convert — Hugging Face conversion on a ~100M-parameter llama that dajian writes:
// GGUF → `export --format hf` → `convert` (F32, F16, Q8_0), each in a fresh child process, reporting wall time,
// throughput against a plain file copy of the same bytes (the I/O floor), and the child's peak RSS against the
// model size (conversion streams tensor by tensor, so peak RSS should stay far below the file size). Then the
// memory estimate (src/models/memory.ts) against the measured peak RSS of running the converted models (target ±15 %).
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { measurePeakRss } from "../src/models/memory-measure.js";
import { estimateGgufFile } from "../src/models/memory.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const SHAPE = { dim: 1024, layers: 8, heads: 16, kvHeads: 4, ffn: 2816, vocabSize: 1024, contextLength: 4096 };
const CTX = Number(process.env.CTX ?? 2048);
const dir = mkdtempSync(join(tmpdir(), "dajian-bench-convert-"));
const src = (p: string) => pathToFileURL(resolve("src", p)).href;
const mib = (x: number) => (x / 1048576).toFixed(1);

/** Run one library call in a fresh tsx child; returns its wall seconds and peak RSS (VmHWM). */
function child(code: string): { seconds: number; peakRss: number; baseline: number } {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(
    script,
    `import { readFileSync } from "node:fs";
const hwm = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
const { exportHfCheckpoint, convertHfCheckpoint } = await import(${JSON.stringify(src("convert/index.ts"))});
void exportHfCheckpoint; void convertHfCheckpoint;
const baseline = hwm();
const t0 = performance.now();
${code}
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, peakRss: hwm(), baseline }));
`,
  );
  const r = spawnSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

function copySeconds(from: string): number {
  const t0 = performance.now();
  copyFileSync(from, join(dir, "copy.bin"));
  const s = (performance.now() - t0) / 1000;
  rmSync(join(dir, "copy.bin"));
  return s;
}

const rows: Record<string, string>[] = [];
const memRows: Record<string, string>[] = [];
let worst = 0;
try {
  const gguf = join(dir, "m100.gguf");
  const t = writeTinyLlamaGguf(gguf, { ...SHAPE, type: "F32", seed: 1, name: "bench-100m" });
  const params = t.bytes / 4;
  const hf = join(dir, "hf");
  const ex = child(`exportHfCheckpoint(${JSON.stringify(gguf)}, ${JSON.stringify(hf)});`);
  const st = statSync(join(hf, "model.safetensors")).size;
  rows.push({
    step: "export --format hf (F32)",
    "MiB out": mib(st),
    seconds: ex.seconds.toFixed(2),
    "MiB/s": (st / 1048576 / ex.seconds).toFixed(0),
    "copy MiB/s": (st / 1048576 / copySeconds(gguf)).toFixed(0),
    "peak RSS MiB": mib(ex.peakRss),
    "RSS − node": mib(ex.peakRss - ex.baseline),
  });
  for (const type of ["F32", "F16", "Q8_0"]) {
    const out = join(dir, `conv-${type}.gguf`);
    const r = child(`convertHfCheckpoint(${JSON.stringify(hf)}, ${JSON.stringify(out)}, { type: "${type}" });`);
    rows.push({
      step: `convert --type ${type}`,
      "MiB out": mib(statSync(out).size),
      seconds: r.seconds.toFixed(2),
      "MiB/s": (st / 1048576 / r.seconds).toFixed(0),
      "copy MiB/s": (st / 1048576 / copySeconds(join(hf, "model.safetensors"))).toFixed(0),
      "peak RSS MiB": mib(r.peakRss),
      "RSS − node": mib(r.peakRss - r.baseline),
    });
    const est = estimateGgufFile(out, { contextSize: CTX });
    const m = await measurePeakRss(out, { contextSize: CTX, threads: 2 });
    const err = est.total / m.peakRss - 1;
    worst = Math.max(worst, Math.abs(err));
    memRows.push({
      model: `converted ${(params / 1e6).toFixed(0)}M ${type}`,
      ctx: String(CTX),
      "measured MiB": mib(m.peakRss),
      "estimate MiB": mib(est.total),
      error: `${err >= 0 ? "+" : ""}${(err * 100).toFixed(1)}%`,
    });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.table(rows);
console.table(memRows);
console.log(`memory estimate worst |error| on converted models: ${(worst * 100).toFixed(1)} % (target ≤ 15 %)`);
mkdirSync("bench/results", { recursive: true });
writeFileSync(
  "bench/results/convert.json",
  JSON.stringify({ date: new Date().toISOString(), rows, memRows, worst }, null, 2),
);
