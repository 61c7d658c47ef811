// Ground truth for the memory estimate: load a GGUF in a fresh child process through node-llama-cpp, evaluate a
// full batch of prompt tokens (the worst-case compute graph), generate a few tokens, and read the process's peak
// resident set (VmHWM in /proc/self/status). A child keeps the measurement free of the caller's own memory.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DajianError } from "../core/errors.js";

export interface MeasureOptions {
  contextSize: number;
  /** Prompt tokens evaluated in one batch (default min(contextSize − genTokens, 512)). */
  promptTokens?: number;
  genTokens?: number;
  threads?: number;
  timeoutMs?: number;
}

export interface MeasuredMemory {
  /** Peak RSS of the whole process (bytes). */
  peakRss: number;
  /** Peak RSS right after the llama.cpp libraries were loaded, before the model. */
  baselineRss: number;
  contextSize: number;
  promptTokens: number;
}

const CHILD = String.raw`
import { readFileSync } from "node:fs";
const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
const { getLlama } = await import(process.env.DAJIAN_NLC_URL);
const [modelPath, ctxS, promptS, genS, threadsS] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never" });
const baselineRss = hwm();
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: Number(ctxS), threads: Number(threadsS) || undefined });
const seq = context.getSequence();
let toks = model.tokenize("The quick brown fox jumps over the lazy dog. 我们的公司政策规定，员工每年有十五天带薪年假。 0123456789 ");
while (toks.length < Number(promptS)) toks = toks.concat(toks);
toks = toks.slice(0, Number(promptS));
await seq.evaluateWithoutGeneratingNewTokens(toks);
let n = 0;
for await (const _t of seq.evaluate([toks[0]], { temperature: 0 })) if (++n >= Number(genS)) break;
process.stdout.write(JSON.stringify({ peakRss: hwm(), baselineRss, contextSize: context.contextSize }) + "\n");
await context.dispose();
await model.dispose();
`;

export async function measurePeakRss(modelPath: string, opts: MeasureOptions): Promise<MeasuredMemory> {
  if (process.platform !== "linux")
    throw new DajianError("unsupported", "peak RSS measurement reads /proc", "run it on Linux");
  const gen = opts.genTokens ?? 8;
  const prompt = opts.promptTokens ?? Math.max(1, Math.min(opts.contextSize - gen - 1, 512));
  const nlc = createRequire(import.meta.url).resolve("node-llama-cpp");
  // A script file, not `node -e`: node-llama-cpp tests its binary in a forked child that inherits execArgv,
  // and an inherited `-e` would make that fork re-run this script (and fall back to compiling llama.cpp).
  const dir = mkdtempSync(join(tmpdir(), "dajian-measure-"));
  const script = join(dir, "measure.mjs");
  writeFileSync(script, CHILD);
  const args = [script, modelPath, String(opts.contextSize), String(prompt), String(gen), String(opts.threads ?? 0)];
  const out = await new Promise<string>((res, rej) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, DAJIAN_NLC_URL: pathToFileURL(nlc).href },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
    child.on("error", rej);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) res(stdout);
      else
        rej(
          new DajianError(
            "internal",
            `measurement child failed (exit ${code}): ${stderr.trim().split("\n").pop() ?? ""}`,
            "check that the model loads: dajian bench model FILE",
          ),
        );
    });
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
  const r = JSON.parse(out.trim().split("\n").pop()!) as Omit<MeasuredMemory, "promptTokens">;
  return { ...r, promptTokens: prompt };
}
