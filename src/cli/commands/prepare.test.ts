// `dajian models catalog|import|export|estimate` and `quantize` as users run them: a real `dajian` process each.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyLlamaGguf } from "../../train/tiny-model.js";
import { runCli } from "../testutil.js";

const root = mkdtempSync(join(tmpdir(), "dajian-cli-prepare-"));
const gguf = join(root, "tiny.gguf");

const dajian = (home: string, args: string[]) => runCli(["--home", home, ...args]);

beforeAll(() => {
  writeTinyLlamaGguf(gguf, {
    type: "F16",
    dim: 256,
    layers: 1,
    heads: 4,
    kvHeads: 2,
    ffn: 256,
    contextLength: 512,
    name: "cli tiny",
  });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("prepare CLI", () => {
  it("models catalog --json reports this machine, fits and recommendations", async () => {
    const r = await dajian(join(root, "h0"), ["models", "catalog", "--json", "--no-gpu", "--task", "embedding"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.hardware.ramTotal).toBeGreaterThan(0);
    expect(j.models.length).toBeGreaterThan(2);
    expect(j.models.every((m: { tasks: string[] }) => m.tasks.includes("embedding"))).toBe(true);
    expect(j.recommended.embedding).toMatch(/:/);
  }, 120_000);

  // Each `dajian` process costs seconds on a busy 2-core box: library tests cover the rest (import.test.ts).
  it("import → export; quantize with a bad type fails with the fix", async () => {
    const a = join(root, "ha");
    const imp = await dajian(a, ["models", "import", gguf, "--name", "tiny", "--json"]);
    expect(imp.code, imp.err).toBe(0);
    expect(JSON.parse(imp.out).manifest).toMatchObject({
      architecture: "llama",
      quantization: "F16",
      hasChatTemplate: true,
    });
    const out = join(root, "export");
    const ex = await dajian(a, ["models", "export", "tiny", out]);
    expect(ex.code, ex.err).toBe(0);
    expect(existsSync(join(out, "manifest.json"))).toBe(true);
    expect(ex.out).toMatch(/exported tiny to .* sha256 [0-9a-f]{64}/);
    const q = await dajian(a, ["quantize", "tiny", join(root, "q.gguf"), "--type", "Q7"]);
    expect(q.code).toBe(1);
    expect(q.err).toMatch(/unknown quantization type "Q7" — use one of .*Q4_K_M/);
  }, 180_000);
});
