// npm run bench:memory — dajian's memory estimate (src/models/memory.ts) against the measured peak RSS of
// loading + running dajian-written llama models (5M–100M params, F32/F16/Q8_0, two context sizes) in a fresh
// child process, side by side with node-llama-cpp's own estimator (GgufInsights; it leaves out the process
// baseline, so the measured baseline is added to it for a fair comparison). Target: |error| ≤ 15 %.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufInsights, getLlama, readGgufFileInfo } from "node-llama-cpp";
import { measurePeakRss } from "../src/models/memory-measure.js";
import { estimateGgufFile } from "../src/models/memory.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const SIZES = [
  { tag: "5M", dim: 256, layers: 6, heads: 4, kvHeads: 2, ffn: 768 },
  { tag: "25M", dim: 512, layers: 8, heads: 8, kvHeads: 4, ffn: 1536 },
  { tag: "100M", dim: 1024, layers: 8, heads: 16, kvHeads: 4, ffn: 2816 },
];
const TYPES = (process.env.TYPES ?? "F32,F16,Q8_0").split(",") as Array<"F32" | "F16" | "Q8_0">;
const CTXS = (process.env.CTXS ?? "512,2048").split(",").map(Number);
const THREADS = Number(process.env.THREADS ?? 2);

const dir = mkdtempSync(join(tmpdir(), "dajian-bench-mem-"));
const llama = await getLlama({ gpu: false, build: "never" });
const mib = (x: number) => (x / 1048576).toFixed(1);
const pct = (est: number, real: number) => `${est >= real ? "+" : ""}${((est / real - 1) * 100).toFixed(1)}%`;
const rows: Record<string, string | number>[] = [];
let worstDajian = 0;
let worstNlc = 0;
try {
  for (const s of SIZES) {
    for (const type of TYPES) {
      const f = join(dir, `${s.tag}-${type}.gguf`);
      const w = writeTinyLlamaGguf(f, { ...s, type, contextLength: 4096, vocabSize: 1024 });
      const insights = await GgufInsights.from(await readGgufFileInfo(f), llama);
      for (const ctx of CTXS) {
        const est = estimateGgufFile(f, { contextSize: ctx });
        const m = await measurePeakRss(f, { contextSize: ctx, threads: THREADS });
        const nlc =
          insights.estimateModelResourceRequirements({ gpuLayers: 0 }).cpuRam +
          insights.estimateContextResourceRequirements({ contextSize: ctx, modelGpuLayers: 0 }).cpuRam +
          m.baselineRss;
        const eD = Math.abs(est.total / m.peakRss - 1);
        const eN = Math.abs(nlc / m.peakRss - 1);
        worstDajian = Math.max(worstDajian, eD);
        worstNlc = Math.max(worstNlc, eN);
        const row = {
          model: s.tag,
          params: `${(insights.totalParameters / 1e6).toFixed(1)}M`,
          type,
          ctx,
          "file MiB": mib(w.bytes),
          "measured MiB": mib(m.peakRss),
          "dajian MiB": mib(est.total),
          "dajian err": pct(est.total, m.peakRss),
          "nlc+base MiB": mib(nlc),
          "nlc err": pct(nlc, m.peakRss),
        };
        rows.push(row);
        console.log(Object.values(row).join("\t"));
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log("");
console.table(rows);
console.log(
  `worst |error|: dajian ${(worstDajian * 100).toFixed(1)} % (target ≤ 15 %), node-llama-cpp estimator ${(worstNlc * 100).toFixed(1)} %`,
);
mkdirSync("bench/results", { recursive: true });
writeFileSync(
  join("bench/results", "prepare-memory.json"),
  JSON.stringify({ date: new Date().toISOString(), threads: THREADS, rows, worstDajian, worstNlc }, null, 2),
);
await llama.dispose();
