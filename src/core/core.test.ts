import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeFileAtomic } from "./atomic.js";
import { loadConfig, saveConfig } from "./config.js";
import { DajianError, errorLine } from "./errors.js";
import { resolveHome } from "./home.js";
import { VERSION } from "./version.js";

describe("core", () => {
  it("VERSION matches package.json", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    expect(VERSION).toBe(pkg.version);
  });

  it("resolves home from flag, then env", () => {
    const prev = process.env.DAJIAN_HOME;
    process.env.DAJIAN_HOME = "/tmp/env-home";
    expect(resolveHome("/tmp/flag-home")).toBe("/tmp/flag-home");
    expect(resolveHome()).toBe("/tmp/env-home");
    if (prev === undefined) delete process.env.DAJIAN_HOME;
    else process.env.DAJIAN_HOME = prev;
  });

  it("config: file then env override, corrupt file is a clear error", () => {
    const home = mkdtempSync(join(tmpdir(), "dj-core-"));
    expect(loadConfig(home, {}).server.host).toBe("127.0.0.1");
    saveConfig(home, { server: { port: 9999 } } as never);
    expect(loadConfig(home, {}).server.port).toBe(9999);
    expect(loadConfig(home, {}).server.host).toBe("127.0.0.1");
    expect(loadConfig(home, { DAJIAN_PORT: "7777" }).server.port).toBe(7777);
    writeFileSync(join(home, "config.json"), "{nope");
    expect(() => loadConfig(home, {})).toThrow(/not valid JSON/);
  });

  it("atomic write: all pieces land under the final name; a throwing producer leaves the old file and no temporary", () => {
    const dir = mkdtempSync(join(tmpdir(), "dajian-atomic-"));
    const path = join(dir, "f.bin");
    const n = writeFileAtomic(path, (put) => {
      put(new Uint8Array([1, 2, 3]));
      put(new Uint8Array(70_000).fill(7));
    });
    expect(n).toBe(70_003);
    const first = readFileSync(path);
    expect([...first.subarray(0, 4)]).toEqual([1, 2, 3, 7]);
    expect(() =>
      writeFileAtomic(path, (put) => {
        put(new Uint8Array([9]));
        throw new Error("producer failed");
      }),
    ).toThrow("producer failed");
    expect(readFileSync(path).equals(first)).toBe(true);
    expect(readdirSync(dir)).toEqual(["f.bin"]);
    expect(existsSync(`${path}.tmp-${process.pid}`)).toBe(false);
  });

  it("errors render as one line with the fix", () => {
    const e = new DajianError("not_found", "knowledge base 'hr' not found", "create it with `dajian kb create hr`");
    expect(e.status).toBe(404);
    expect(errorLine(e)).toBe("knowledge base 'hr' not found — create it with `dajian kb create hr`");
    expect(errorLine(new Error("a\nb"))).toBe("a");
  });
});
