// Two real `dajian serve` processes on one home dir share rate limits through a real redis-server (Debian package
// redis-server, started by the test on a free port): a key allowed 10 requests per minute gets exactly 10 across both.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../core/config.js";
import { Security } from "../security/service.js";
import { startRedis, type TestRedis } from "../security/test-redis.js";
import { LOCAL_PRINCIPAL } from "../security/types.js";

const ROOT = resolve(import.meta.dirname, "..", "..");

function serve(home: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "--home", home, "serve", "--port", "0"],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DAJIAN_LOG: "warn" },
    },
  );
  return new Promise((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`serve did not start: ${out}`)), 90_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /serving on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ proc, url: m[1] });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.on("exit", (code) => fail(new Error(`serve exited with ${code}: ${out}`)));
  });
}

let redis: TestRedis;
let home: string;
const procs: ChildProcess[] = [];
const urls: string[] = [];
let key = "";

beforeAll(async () => {
  redis = await startRedis();
  home = mkdtempSync(join(tmpdir(), "dj-redis-"));
  writeFileSync(join(home, "config.json"), JSON.stringify({ server: { auth: true }, redisUrl: redis.url }));
  const sec = Security.open(home, DEFAULT_CONFIG);
  const admin = await sec.createKey(LOCAL_PRINCIPAL, { name: "admin", role: "admin", limits: { rpm: 10 } });
  key = admin.key;
  await sec.close();
  const started = await Promise.all([serve(home), serve(home)]);
  for (const s of started) {
    procs.push(s.proc);
    urls.push(s.url);
  }
}, 180_000);

afterAll(async () => {
  for (const p of procs) {
    if (p.exitCode === null) {
      const done = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await done;
    }
  }
  await redis?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("two server processes, one Redis", () => {
  it("share requests-per-minute: a key allowed 10/min gets 10 in total across both processes, then 429 + Retry-After", async () => {
    expect(urls[0]).not.toBe(urls[1]);
    const get = (u: string) => fetch(`${u}/api/kbs`, { headers: { authorization: `Bearer ${key}` } });
    // 6 on the first process…
    for (let i = 0; i < 6; i++) expect((await get(urls[0])).status).toBe(200);
    // …leave 4 for both together. Per-process counters would let the second process pass 10 more (14 in all).
    const res = await Promise.all(Array.from({ length: 24 }, (_, i) => get(urls[i % 2])));
    const ok = res.filter((r) => r.status === 200);
    const limited = res.filter((r) => r.status === 429);
    expect(ok).toHaveLength(4);
    expect(limited).toHaveLength(20);
    expect(Number(limited[0].headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // the second process refuses on its own once the shared counter is spent
    expect((await get(urls[1])).status).toBe(429);
  });
});
