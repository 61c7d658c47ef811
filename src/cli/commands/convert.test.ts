// `dajian export --format hf` and `dajian convert` as users run them: a real `dajian` process each.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufHeader, metaString } from "../../gguf/index.js";
import { ModelRegistry } from "../../models/registry.js";
import { openHomeDb } from "../../store/sqlite.js";
import { writeTinyLlamaGguf } from "../../train/tiny-model.js";
import { runCli } from "../testutil.js";

const root = mkdtempSync(join(tmpdir(), "dajian-cli-convert-"));
const home = join(root, "home");
const gguf = join(root, "tiny.gguf");

const dajian = (args: string[]) => runCli(["--home", home, ...args]);

beforeAll(() => writeTinyLlamaGguf(gguf, { seed: 2, name: "cli tiny" }));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("convert CLI", () => {
  it("export --format hf, then convert --type Q8_0 --register --json", async () => {
    const hf = join(root, "hf");
    const e = await dajian(["export", gguf, hf, "--format", "hf", "--hf-arch", "MistralForCausalLM", "--json"]);
    expect(e.code, e.err).toBe(0);
    expect(JSON.parse(e.out)).toMatchObject({ hfArchitecture: "MistralForCausalLM", dtype: "F32" });
    expect(JSON.parse(readFileSync(join(hf, "config.json"), "utf8")).model_type).toBe("mistral");

    const out = join(root, "conv.gguf");
    const c = await dajian(["convert", hf, out, "--type", "Q8_0", "--name", "conv-tiny", "--register", "--json"]);
    expect(c.code, c.err).toBe(0);
    expect(JSON.parse(c.out)).toMatchObject({ architecture: "llama", type: "Q8_0", registered: "conv-tiny" });
    expect(metaString(readGgufHeader(out), "general.name")).toBe("conv-tiny");
    const db = openHomeDb(home);
    try {
      expect(new ModelRegistry(db, home).get("conv-tiny")).toMatchObject({ kind: "local" });
    } finally {
      db.close();
    }
  });

  it("names the fix for an adapter without --base", async () => {
    const peft = join(root, "peft");
    mkdirSync(peft);
    writeFileSync(join(peft, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4 }));
    const a = await dajian(["convert", peft, join(root, "a.gguf")]);
    expect(a.code).toBe(1);
    expect(a.err.trim().split("\n")).toHaveLength(1);
    expect(a.err).toMatch(/LoRA adapter.*--base/);
  });
});
