// `dajian train` as users run it: real processes, a real kill -9 mid-run and a resume whose losses must equal an
// uninterrupted run's, the --json summary, clean refusals, and the trained GGUF through llama.cpp
// (`dajian generate`, `dajian eval perplexity`).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCheckpointState } from "../../train/run/checkpoint.js";
import { TINY_CORPUS } from "../../train/tiny-model.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const root = mkdtempSync(join(tmpdir(), "dajian-cli-train-"));
const home = join(root, "home");
const corpus = join(root, "corpus.jsonl");
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The built CLI when dist is newer than every source file (CI builds first: fast starts); else tsx. */
function cliArgs(): string[] {
  const built = join(ROOT, "dist/cli/commands/train.js");
  if (!existsSync(built)) return ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
  const newest = (readdirSync(join(ROOT, "src"), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .reduce((m, f) => Math.max(m, statSync(join(ROOT, "src", f)).mtimeMs), 0);
  return statSync(built).mtimeMs >= newest
    ? [join(ROOT, "bin/dajian.js")]
    : ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
}
const CLI = cliArgs();

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, [...CLI, "--home", home, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function dajian(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res, rej) => {
    const p = start(args);
    let out = "";
    let err = "";
    p.stdout?.on("data", (d) => (out += d));
    p.stderr?.on("data", (d) => (err += d));
    p.on("error", rej);
    p.on("close", (code) => res({ code: code ?? -1, out, err }));
  });
}

// A micro model so each run takes seconds on two busy cores.
const MICRO = ["--vocab", "300", "--layers", "1", "--dim", "32", "--heads", "2", "--kv-heads", "1", "--ffn", "64"];
const RUN = [...MICRO, "--seq", "48", "--batch", "2", "--seed", "3", "--threads", "1", "--val-batches", "2"];
const STEPS = 80;
const EVERY = ["--checkpoint-every", "10", "--val-every", "20"];

interface Metric {
  step: number;
  loss: number;
  valLoss?: number;
}
const metrics = (dir: string): Metric[] =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Metric);

beforeAll(() => {
  // 400 short documents mixing the built-in English/Chinese/code sample lines.
  const lines = Array.from({ length: 400 }, (_, i) =>
    JSON.stringify({ id: i, text: `${TINY_CORPUS[i % TINY_CORPUS.length]} ${TINY_CORPUS[(i * 7) % 13]}` }),
  );
  writeFileSync(corpus, lines.join("\n") + "\n");
});

// Several real processes per test; generous limits for a loaded two-core machine.
describe("dajian train", { timeout: 180_000 }, () => {
  let summaryA: Record<string, unknown>;
  const dirA = join(root, "runA");
  const modelA = join(root, "a.gguf");

  it("trains the micro model, lowers the loss and ends with a one-line JSON summary", async () => {
    const r = await dajian([
      "train",
      ...["--data", corpus, "--out", modelA, "--run-dir", dirA, ...RUN, "--steps", String(STEPS)],
      ...EVERY,
      "--json",
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe(""); // --json is quiet
    const lines = r.out.trim().split("\n");
    summaryA = JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
    expect(Object.keys(summaryA)).toEqual(
      expect.arrayContaining(["steps", "tokens", "tokensPerSecond", "trainLoss", "valLoss", "valPerplexity"]),
    );
    expect(summaryA).toMatchObject({ steps: STEPS, tokens: STEPS * 48 * 2, out: modelA, runDir: dirA, type: "F32" });
    expect(summaryA.tokensPerSecond).toBeGreaterThan(0);
    expect(summaryA.valPerplexity).toBeCloseTo(Math.exp(summaryA.valLoss as number), 6);
    const m = metrics(dirA);
    expect(m.map((x) => x.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    const mean = (xs: Metric[]): number => xs.reduce((a, x) => a + x.loss, 0) / xs.length;
    expect(m[0].loss).toBeGreaterThan(Math.log(300) - 1); // starts near uniform over the vocabulary
    expect(mean(m.slice(-10))).toBeLessThan(mean(m.slice(0, 10)) - 1);
    expect(m.filter((x) => x.valLoss !== undefined).map((x) => x.step)).toEqual([20, 40, 60, 80]);
    const html = readFileSync(join(dirA, "loss-curve.html"), "utf8");
    expect(html).toContain("<svg");
    expect(html).toContain(`step ${STEPS}`);
    expect(existsSync(modelA)).toBe(true);
  });

  it("continues a run killed with SIGKILL after a checkpoint with exactly the uninterrupted losses", async () => {
    const dirB = join(root, "runB");
    const modelB = join(root, "b.gguf");
    const args = ["--data", corpus, "--out", modelB, "--run-dir", dirB, ...RUN, "--steps", String(STEPS)];
    const child = start(["train", ...args, ...EVERY, "--json"]);
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on("exit", (_c, sig) => res(sig)));
    const ckpt = join(dirB, "checkpoint.bin");
    while (!existsSync(ckpt)) await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    expect(existsSync(modelB)).toBe(false); // it really died mid-run
    const at = readCheckpointState<{ step: number }>(ckpt)?.step ?? 0;
    expect(at).toBeGreaterThanOrEqual(10);
    expect(at).toBeLessThan(STEPS);

    const r = await dajian(["train", "--resume", dirB, "--json"]);
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out.trim().split("\n").pop() as string) as Record<string, unknown>;
    expect(s.resumedFrom).toBe(at);
    expect(s.steps).toBe(STEPS);
    const a = metrics(join(root, "runA"));
    const b = metrics(dirB);
    expect(b.map((x) => x.step)).toEqual(a.map((x) => x.step));
    for (let i = at; i < STEPS; i++) {
      expect(Math.abs(b[i].loss - a[i].loss), `step ${i + 1}`).toBeLessThanOrEqual(1e-5);
      const va = a[i].valLoss;
      if (va !== undefined) expect(Math.abs((b[i].valLoss as number) - va)).toBeLessThanOrEqual(1e-5);
    }
    expect(Math.abs((s.valLoss as number) - (summaryA.valLoss as number))).toBeLessThanOrEqual(1e-5);
    // Same weights at the end: the exported files are byte-identical.
    expect(readFileSync(modelB).equals(readFileSync(modelA))).toBe(true);
  });

  it("serves the trained model through llama.cpp: dajian generate and dajian eval perplexity", async () => {
    const g = await dajian([
      "generate",
      modelA,
      "The quick brown",
      "--max-tokens",
      "8",
      "--temperature",
      "0",
      "--json",
    ]);
    expect(g.code, g.err).toBe(0);
    const gen = JSON.parse(g.out.trim().split("\n").pop() as string) as { text: string; usage?: unknown };
    expect(typeof gen.text).toBe("string");
    const p = await dajian([
      "eval",
      "perplexity",
      modelA,
      join(dirA, "data", "val.txt"),
      "--ctx",
      "48",
      "--max-tokens",
      "400",
      "--json",
    ]);
    expect(p.code, p.err).toBe(0);
    const ppl = JSON.parse(p.out.trim().split("\n").pop() as string) as { perplexity: number; tokensScored: number };
    expect(ppl.tokensScored).toBeGreaterThan(10);
    // llama.cpp scores the same held-out text: far better than chance (300-token vocabulary), near dajian's figure.
    expect(ppl.perplexity).toBeLessThan(150);
    expect(ppl.perplexity / (summaryA.valPerplexity as number)).toBeGreaterThan(0.5);
    expect(ppl.perplexity / (summaryA.valPerplexity as number)).toBeLessThan(2);
  });

  it("stops on Ctrl-C (SIGINT) after the running step with a checkpoint and names the resume command", async () => {
    const dirC = join(root, "runC");
    const args = ["--data", corpus, "--out", join(root, "c.gguf"), "--run-dir", dirC, ...RUN, "--steps", "100000"];
    const child = start(["train", ...args, "--checkpoint-every", "100000", "--val-every", "100000"]);
    let err = "";
    child.stderr?.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
    const mfile = join(dirC, "metrics.jsonl");
    while (!existsSync(mfile) || readFileSync(mfile, "utf8").split("\n").length < 4)
      await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGINT");
    expect(await exited).toBe(1);
    const at = readCheckpointState<{ step: number }>(join(dirC, "checkpoint.bin"))?.step ?? 0;
    expect(at).toBeGreaterThanOrEqual(3);
    expect(metrics(dirC).at(-1)?.step).toBe(at); // the checkpoint holds the last step that ran
    expect(err).toContain(`training stopped (SIGINT) at step ${at}`);
    expect(err).toContain(`continue with: dajian train --resume ${dirC}`);
  });

  it("refuses bad input with one line that names the fix", async () => {
    const missing = await dajian(["train", "--data", join(root, "nope.txt"), "--out", join(root, "x.gguf")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^dajian: training data .*nope\.txt not found — give text or JSONL files/);

    const empty = join(root, "empty.jsonl");
    writeFileSync(empty, '\n{"text": "   "}\nnot json\n');
    const e = await dajian(["train", "--data", empty, "--out", join(root, "x.gguf"), "--run-dir", join(root, "e")]);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/no text found in .*empty\.jsonl — give text files or JSONL/);
    expect(existsSync(join(root, "e"))).toBe(false); // no half-made run folder

    const big = await dajian([
      "train",
      "--data",
      corpus,
      "--out",
      join(root, "x.gguf"),
      "--preset",
      "base",
      "--max-memory",
      "2GiB",
    ]);
    expect(big.code).toBe(1);
    const [preflight, refusal] = big.err.trim().split("\n");
    expect(preflight).toMatch(/^pre-flight: 10\d\.\d\dM parameters · memory ≈/);
    expect(refusal).toMatch(/^dajian: .* needs about .* but only 2\.0 GiB is available — use a smaller --preset/);

    expect(existsSync(join(root, "x.gguf"))).toBe(false);
  });
});
