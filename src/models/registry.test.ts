import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { saveConfig } from "../core/config.js";
import { openHomeDb, type SqliteDb } from "../store/sqlite.js";
import { ModelRegistry, parseAdapterArg } from "./registry.js";
import { PROVIDER_PRESETS } from "./presets.js";
import { recordUsage, usageSummary } from "./usage.js";

let home: string;
let db: SqliteDb;

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), "dajian-reg-"));
  db = openHomeDb(home);
});
afterEach(() => {
  db.close();
  rmSync(home, { recursive: true, force: true });
});

function errCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isDajianError(e) ? e.code : "other";
  }
  return undefined;
}

describe("model registry", () => {
  it("adds local and remote entries, keeps only the key's env var name, and lists them", () => {
    const gguf = join(home, "m.gguf");
    writeFileSync(gguf, "GGUF");
    const reg = new ModelRegistry(db, home, {});
    const a = reg.add("local-a", { kind: "local", path: gguf, sequences: 2, adapters: [{ path: gguf, scale: 0.5 }] });
    expect(a).toMatchObject({
      name: "local-a",
      kind: "local",
      path: gguf,
      sequences: 2,
      isDefault: true,
      origin: "db",
    });
    const d = reg.add("ds", { provider: "deepseek" });
    expect(d).toMatchObject({
      kind: "remote",
      baseURL: PROVIDER_PRESETS.deepseek.baseURL,
      apiKeyEnv: "DEEPSEEK_API_KEY",
      model: "deepseek-chat",
      isDefault: false,
    });
    const raw = db.prepare("SELECT spec FROM model_registry WHERE name = 'ds'").pluck().get() as string;
    expect(raw).not.toMatch(/sk-/);
    expect(JSON.parse(raw).apiKeyEnv).toBe("DEEPSEEK_API_KEY");
    expect(reg.list().map((e) => e.name)).toEqual(["local-a", "ds"]);
    reg.setDefault("ds");
    expect(reg.getDefault()?.name).toBe("ds");
    reg.remove("local-a");
    expect(reg.get("local-a")).toBeUndefined();
    expect(errCode(() => reg.remove("local-a"))).toBe("not_found");
  });

  it("has presets for the common Chinese and international providers, local ones allowed on private networks", () => {
    for (const p of [
      "openai",
      "deepseek",
      "zhipu",
      "qwen",
      "dashscope",
      "moonshot",
      "ollama",
      "vllm",
      "llamacpp-server",
    ]) {
      expect(PROVIDER_PRESETS[p], p).toBeDefined();
      expect(() => new URL(PROVIDER_PRESETS[p].baseURL)).not.toThrow();
    }
    const reg = new ModelRegistry(db, home, {});
    expect(reg.add("o", { provider: "ollama" })).toMatchObject({
      allowPrivateNetwork: true,
      baseURL: "http://127.0.0.1:11434/v1",
    });
    const glm = reg.add("glm", { provider: "zhipu", model: "glm-4-plus" });
    expect(glm).toMatchObject({ model: "glm-4-plus" });
    expect("allowPrivateNetwork" in glm).toBe(false);
  });

  it("refuses bad input with errors that name the fix", () => {
    const reg = new ModelRegistry(db, home, {});
    expect(errCode(() => reg.add("bad name", { provider: "openai" }))).toBe("invalid_input");
    expect(errCode(() => reg.add("kb:x", { provider: "openai" }))).toBe("invalid_input");
    expect(errCode(() => reg.add("x", { provider: "nope" }))).toBe("invalid_input");
    expect(errCode(() => reg.add("x", { kind: "remote", baseURL: "ftp://x/v1", model: "m" }))).toBe("invalid_input");
    expect(errCode(() => reg.add("x", { kind: "remote", baseURL: "https://u:p@x/v1", model: "m" }))).toBe(
      "invalid_input",
    );
    // Passing the key where the env var name belongs is caught (it is not a valid env var name).
    expect(errCode(() => reg.add("x", { provider: "openai", apiKeyEnv: "sk-abc123-def" }))).toBe("invalid_input");
    expect(errCode(() => reg.add("x", { kind: "local", path: join(home, "missing.gguf") }))).toBe("not_found");
    reg.add("x", { provider: "openai" });
    expect(errCode(() => reg.add("x", { provider: "openai" }))).toBe("already_exists");
    expect(reg.add("x", { provider: "moonshot" }, { replace: true })).toMatchObject({
      baseURL: PROVIDER_PRESETS.moonshot.baseURL,
    });
  });

  it("merges config-file and env entries over the DB, env winning; DAJIAN_DEFAULT_MODEL picks the default", () => {
    saveConfig(home, { models: { cfg: { provider: "qwen" }, both: { provider: "openai" } } } as never);
    const env = {
      DAJIAN_MODELS: JSON.stringify({
        both: { provider: "deepseek" },
        envonly: { kind: "remote", baseURL: "http://10.0.0.2:8000/v1", model: "m" },
      }),
      DAJIAN_DEFAULT_MODEL: "envonly",
    };
    const reg = new ModelRegistry(db, home, env);
    reg.add("dbm", { provider: "moonshot" });
    const byName = Object.fromEntries(reg.list().map((e) => [e.name, e]));
    expect(byName.cfg).toMatchObject({ origin: "config", provider: "qwen" });
    expect(byName.both).toMatchObject({ origin: "env", provider: "deepseek" });
    expect(byName.envonly).toMatchObject({ origin: "env", isDefault: true });
    expect(byName.dbm.isDefault).toBe(false);
    expect(errCode(() => reg.remove("cfg"))).toBe("invalid_input");
    expect(errCode(() => new ModelRegistry(db, home, { DAJIAN_MODELS: "{nope" }).list())).toBe("invalid_input");
  });

  it("parses --adapter FILE[:SCALE]", () => {
    expect(parseAdapterArg("a.gguf")).toEqual({ path: "a.gguf", scale: 1 });
    expect(parseAdapterArg("/x/a.gguf:0.25")).toEqual({ path: "/x/a.gguf", scale: 0.25 });
  });

  it("records token usage per model and principal", () => {
    recordUsage(db, { model: "m", principalId: "u1", promptTokens: 10, completionTokens: 5, durationMs: 3 });
    recordUsage(db, { model: "m", principalId: "u1", promptTokens: 1, completionTokens: 2, durationMs: 3 });
    recordUsage(db, { model: "m", principalId: "u2", promptTokens: 7, completionTokens: 0, durationMs: 3 });
    expect(usageSummary(db, { principalId: "u1" })).toEqual([
      { model: "m", principalId: "u1", requests: 2, promptTokens: 11, completionTokens: 7 },
    ]);
    expect(usageSummary(db)).toHaveLength(2);
  });
});
