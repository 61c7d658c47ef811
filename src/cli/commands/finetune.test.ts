// `dajian finetune / merge / eval qa / data preview` as users run them: a real `dajian` process per command,
// including a kill -9 in the middle of fine-tuning and `--resume`.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { readCheckpointState } from "../../train/run/checkpoint.js";
import { companyQa, writeQaJsonl } from "../../train/lora/company.js";
import { openLlamaCpp } from "../../train/lora/llamacpp.js";
import { writeTinyLlamaGguf } from "../../train/tiny-model.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const dir = mkdtempSync(join(tmpdir(), "dajian-finetune-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = writeTinyLlamaGguf(join(dir, "base.gguf"), { dim: 64, layers: 2, std: 0.05 }).path;
const data = join(dir, "qa.jsonl");
writeQaJsonl(data, companyQa("train"));
const held = join(dir, "held.jsonl");
writeQaJsonl(held, companyQa("heldout"));

function start(args: string[]): { p: ChildProcess; done: Promise<{ code: number; out: string; err: string }> } {
  const p = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "--home", dir, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stdout?.on("data", (d) => (out += d));
  p.stderr?.on("data", (d) => (err += d));
  const done = new Promise<{ code: number; out: string; err: string }>((res, rej) => {
    p.on("error", rej);
    p.on("close", (code, sig) => res({ code: code ?? (sig ? 137 : -1), out, err }));
  });
  return { p, done };
}
const dajian = (args: string[]) => start(args).done;
const lastJson = (out: string): Record<string, unknown> =>
  JSON.parse(out.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;

const TRAIN = ["--base", base, "--data", data, "--steps", "30", "--batch", "2", "--lr", "5e-3", "--threads", "1"];

// Spawned processes under a shared 2-core CI machine: generous timeouts, no timed assertions.
describe("dajian finetune / merge / eval qa / data preview", { timeout: 240_000 }, () => {
  it("survives kill -9: --resume loses only the steps after the last checkpoint and ends where a clean run does", async () => {
    const runA = join(dir, "run-killed");
    const job = start(["finetune", ...TRAIN, "--out", join(dir, "a.gguf"), "--run", runA, "--checkpoint-every", "5"]);
    const metrics = join(runA, "metrics.jsonl");
    const t0 = Date.now();
    while (Date.now() - t0 < 90_000) {
      if (existsSync(metrics) && readFileSync(metrics, "utf8").split("\n").length > 13) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    job.p.kill("SIGKILL");
    const killed = await job.done;
    expect(killed.code).toBe(137);
    expect(killed.err).toMatch(/pre-flight: .* memory ≈ .* time ≈/);
    const ck = readCheckpointState<{ step: number }>(join(runA, "checkpoint.bin"));
    expect(ck?.step).toBeGreaterThanOrEqual(10);
    expect((ck?.step ?? 0) % 5).toBe(0);
    expect(existsSync(join(dir, "a.gguf"))).toBe(false);

    const resumed = await dajian(["finetune", "--resume", runA, "--data", data, "--threads", "1", "--json"]);
    expect(resumed.code, resumed.err).toBe(0);
    const s = lastJson(resumed.out);
    expect(s.steps).toBe(30);
    expect(s.resumedFromStep).toBe(ck?.step);
    expect(readFileSync(metrics, "utf8").trim().split("\n")).toHaveLength(30);

    const clean = await dajian([
      "finetune",
      ...TRAIN,
      "--out",
      join(dir, "b.gguf"),
      "--run",
      join(dir, "run-clean"),
      "--json",
    ]);
    expect(clean.code, clean.err).toBe(0);
    const c = lastJson(clean.out);
    expect(c.trainLossAfter).toBeLessThan(c.trainLossBefore as number);
    // Same seed, same batches, same arithmetic: the resumed adapter is the uninterrupted one, bit for bit.
    expect(Buffer.compare(readFileSync(join(dir, "a.gguf")), readFileSync(join(dir, "b.gguf")))).toBe(0);
    expect(c.trainLossAfter).toBe(s.trainLossAfter);

    const again = await dajian(["finetune", ...TRAIN, "--out", join(dir, "c.gguf"), "--run", runA]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already holds a run.*--resume/);
  });

  it("recomputes the FFN activations by default; --no-recompute-ffn keeps them, and the pre-flight line says which", async () => {
    const args = ["finetune", ...TRAIN.map((a) => (a === "30" ? "3" : a)), "--json"];
    const r = await dajian([...args, "--out", join(dir, "r.gguf"), "--run", join(dir, "run-r")]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/pre-flight: .*FFN activations recomputed in the backward/);
    // …and which kernels the products run on (OpenBLAS or ggml's own, with how to get OpenBLAS).
    expect(r.err).toMatch(/engine: ggml cpu-\S+ .*f32 products on (OpenBLAS|ggml)/);
    expect(lastJson(r.out).steps).toBe(3);
    const plain = await dajian([
      ...args,
      "--out",
      join(dir, "p.gguf"),
      "--run",
      join(dir, "run-p"),
      "--no-recompute-ffn",
    ]);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.err).toMatch(/pre-flight: .*FFN activations kept/);
    // Recomputing changes what is kept, not the arithmetic's result beyond rounding.
    expect(lastJson(r.out).trainLossAfter).toBeCloseTo(lastJson(plain.out).trainLossAfter as number, 4);
  });

  it("merges (and quantizes), evaluates before vs after, and previews the trained tokens", async () => {
    const adapter = join(dir, "b.gguf");
    if (!existsSync(adapter)) {
      const r = await dajian(["finetune", ...TRAIN, "--out", adapter, "--run", join(dir, "run-clean")]);
      expect(r.code, r.err).toBe(0);
    }
    const merged = join(dir, "merged-q8.gguf");
    const m = await dajian([
      "merge",
      "--base",
      base,
      "--adapter",
      adapter,
      "--out",
      merged,
      "--quantize",
      "Q8_0",
      "--json",
    ]);
    expect(m.code, m.err).toBe(0);
    expect(lastJson(m.out)).toMatchObject({ merged: 14, rank: 8, alpha: 16, quantize: "Q8_0" });
    const s = await openLlamaCpp(merged, undefined, { contextSize: 32 });
    await s.dispose();

    const report = join(dir, "qa.html");
    const ev = await dajian([
      "eval",
      "qa",
      base,
      "--adapter",
      adapter,
      "--data",
      held,
      "--run",
      join(dir, "run-clean"),
      "--report",
      report,
      "--max-tokens",
      "8",
      "--json",
    ]);
    expect(ev.code, ev.err).toBe(0);
    const r = lastJson(ev.out) as { before: { n: number; loss: number }; after: { n: number; loss: number } };
    expect(r.before.n).toBe(10);
    expect(r.after.n).toBe(10);
    expect(r.after.loss).not.toBe(r.before.loss);
    expect(readFileSync(report, "utf8")).toMatch(/answer contained[\s\S]*<svg/);

    const pv = await dajian(["data", "preview", data, "--base", base, "--json"]);
    expect(pv.code, pv.err).toBe(0);
    const tokens = (lastJson(pv.out) as { tokens: Array<{ text: string; trained: boolean }> }).tokens;
    const trained = tokens
      .filter((t) => t.trained)
      .map((t) => t.text)
      .join("");
    expect(trained).toContain("27 days<|im_end|>");
    expect(
      tokens
        .filter((t) => !t.trained)
        .map((t) => t.text)
        .join(""),
    ).toContain("annual leave");
    const plain = await dajian(["data", "preview", data, "--base", base]);
    expect(plain.out).toContain("⟦27 days<|im_end|>");
  });
});
