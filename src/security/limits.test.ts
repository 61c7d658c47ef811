// Limits and budgets under concurrency: in-process store and a real redis-server shared by two stores.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { MemoryLimitStore, RedisLimitStore, type LimitStore } from "./limits.js";
import { Security } from "./service.js";
import { startRedis, type TestRedis } from "./test-redis.js";
import { LOCAL_PRINCIPAL, type Principal } from "./types.js";

const homes: string[] = [];
function open(store?: LimitStore, home?: string): Security {
  const h = home ?? mkdtempSync(join(tmpdir(), "dajian-lim-"));
  if (!home) homes.push(h);
  return Security.open(h, DEFAULT_CONFIG, { limitStore: store });
}
afterAll(() => {
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

async function settleAll<T>(ps: Promise<T>[]) {
  const r = await Promise.allSettled(ps);
  return {
    ok: r.filter((x) => x.status === "fulfilled").map((x) => (x as PromiseFulfilledResult<T>).value),
    err: r.filter((x) => x.status === "rejected").map((x) => (x as PromiseRejectedResult).reason as DajianError),
  };
}

async function keyPrincipal(sec: Security, limits: Record<string, number>): Promise<Principal> {
  const k = await sec.createKey(LOCAL_PRINCIPAL, { name: "k", role: "member", limits });
  return sec.principalForKey(k.key)!;
}

describe("in-process limits", () => {
  it("50 parallel calls at the edge of a daily budget never exceed it; settling refunds unused tokens", async () => {
    const sec = open();
    const p = await keyPrincipal(sec, { dailyTokens: 1000 });
    const { ok, err } = await settleAll(
      Array.from({ length: 50 }, () => sec.admit(p, { promptTokens: 40, maxTokens: 60 })),
    );
    expect(ok).toHaveLength(10);
    expect(err).toHaveLength(40);
    expect(err[0].code).toBe("rate_limited");
    expect(err[0].retryAfter).toBeGreaterThan(0);
    expect(err[0].message).toMatch(/token budget/);
    await Promise.all(ok.map((l) => l.settle({ promptTokens: 40, completionTokens: 10 }))); // used 50 of 100 each
    const again = await settleAll(Array.from({ length: 20 }, () => sec.admit(p, { promptTokens: 40, maxTokens: 60 })));
    expect(again.ok).toHaveLength(5); // 500 used, 500 left → 5 more reservations of 100
    await sec.close();
  });

  it("requests per minute (GCRA) and concurrency caps", async () => {
    const sec = open();
    const p = await keyPrincipal(sec, { rpm: 5, maxConcurrent: 2 });
    const r = await settleAll(Array.from({ length: 8 }, () => sec.checkRequest(p)));
    expect(r.ok).toHaveLength(5);
    expect(r.err[0].retryAfter).toBeGreaterThanOrEqual(1);
    expect(r.err[0].retryAfter).toBeLessThanOrEqual(12);
    const a = await sec.admit(p, { promptTokens: 1, maxTokens: 1 });
    await sec.admit(p, { promptTokens: 1, maxTokens: 1 });
    const third = await settleAll([sec.admit(p, { promptTokens: 1, maxTokens: 1 })]);
    expect(third.err[0].message).toMatch(/concurrent/);
    await a.settle({ promptTokens: 1, completionTokens: 1 });
    await a.settle({ promptTokens: 1, completionTokens: 1 }); // idempotent
    await sec.admit(p, { promptTokens: 1, maxTokens: 1 });
    await sec.close();
  });

  it("group and user limits apply to all their keys together; a failed check reserves nothing", async () => {
    const sec = open();
    await sec.addUser(LOCAL_PRINCIPAL, "alice", "member");
    await sec.addUser(LOCAL_PRINCIPAL, "bob", "member");
    sec.addGroup(LOCAL_PRINCIPAL, "team");
    sec.setMembership(LOCAL_PRINCIPAL, "team", "alice", true);
    sec.setMembership(LOCAL_PRINCIPAL, "team", "bob", true);
    sec.setLimits(LOCAL_PRINCIPAL, { kind: "group", name: "team" }, { tpm: 1000 });
    sec.setLimits(LOCAL_PRINCIPAL, { kind: "user", name: "alice" }, { dailyTokens: 300 });
    const alice = sec.principalForUser(sec.users.get("alice").id)!;
    const bob = sec.principalForUser(sec.users.get("bob").id)!;
    await sec.admit(alice, { promptTokens: 100, maxTokens: 100 });
    const over = await settleAll([sec.admit(alice, { promptTokens: 100, maxTokens: 100 })]); // alice's 300/day
    expect(over.err[0].message).toMatch(/budget/);
    // alice's refused call reserved nothing from the group's tpm: bob still has 800 of it
    await sec.admit(bob, { promptTokens: 400, maxTokens: 400 });
    const full = await settleAll([sec.admit(bob, { promptTokens: 1, maxTokens: 1 })]);
    expect(full.err[0].message).toMatch(/token rate/);
    await sec.close();
  });

  it("caps max_tokens and prompt size from config", async () => {
    const h = mkdtempSync(join(tmpdir(), "dajian-lim-"));
    homes.push(h);
    const sec = Security.open(h, { ...DEFAULT_CONFIG, security: { maxTokensCap: 512, maxPromptTokens: 1000 } });
    await expect(sec.admit(LOCAL_PRINCIPAL, { promptTokens: 10, maxTokens: 4096 })).rejects.toThrow(
      /above the cap 512/,
    );
    await expect(sec.admit(LOCAL_PRINCIPAL, { promptTokens: 5000, maxTokens: 10 })).rejects.toThrow(/limit is 1000/);
    await sec.close();
  });

  it("the store itself is atomic across subjects", () => {
    const s = new MemoryLimitStore();
    const checks = [
      { kind: "budget" as const, key: "a", limit: 10, cost: 6, resetAt: Date.now() + 1e6 },
      { kind: "budget" as const, key: "b", limit: 5, cost: 6, resetAt: Date.now() + 1e6 },
    ];
    expect(s.reserveSync(checks, "l").ok).toBe(false);
    expect(s.reserveSync([checks[0]], "l").ok).toBe(true); // "a" was untouched by the failed pair
  });
});

describe("Redis limits (real redis-server)", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it("two stores (as two server processes would) share one budget: 50 parallel calls never exceed it", async () => {
    const home = mkdtempSync(join(tmpdir(), "dajian-lim-"));
    homes.push(home);
    const s1 = open(new RedisLimitStore(new Redis(redis.url)), home);
    const s2 = open(new RedisLimitStore(new Redis(redis.url)), home);
    const k = await s1.createKey(LOCAL_PRINCIPAL, {
      name: "shared",
      role: "member",
      limits: { dailyTokens: 1000, monthlyTokens: 5000, tpm: 100000, maxConcurrent: 50 },
    });
    const p1 = s1.principalForKey(k.key)!;
    const p2 = s2.principalForKey(k.key)!;
    const { ok, err } = await settleAll(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? s1 : s2).admit(i % 2 ? p1 : p2, { promptTokens: 30, maxTokens: 70 }),
      ),
    );
    expect(ok).toHaveLength(10);
    expect(err.every((e) => e.code === "rate_limited" && (e.retryAfter ?? 0) > 0)).toBe(true);
    await Promise.all(ok.map((l) => l.settle({ promptTokens: 30, completionTokens: 20 })));
    const again = await settleAll(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? s1 : s2).admit(p1, { promptTokens: 30, maxTokens: 70 })),
    );
    expect(again.ok).toHaveLength(5);
    // the counter lives in Redis
    const r = new Redis(redis.url);
    const day = new Date().toISOString().slice(0, 10);
    expect(Number(await r.get(`dajian:lim:day:key:${k.id}:${day}`))).toBe(1000);
    r.disconnect();
    await s1.close();
    await s2.close();
  });

  it("rpm and concurrency are shared too, with Retry-After", async () => {
    const home = mkdtempSync(join(tmpdir(), "dajian-lim-"));
    homes.push(home);
    const s1 = open(new RedisLimitStore(new Redis(redis.url)), home);
    const s2 = open(new RedisLimitStore(new Redis(redis.url)), home);
    const k = await s1.createKey(LOCAL_PRINCIPAL, {
      name: "rl",
      role: "member",
      limits: { rpm: 10, maxConcurrent: 3 },
    });
    const p = s1.principalForKey(k.key)!;
    const r = await settleAll(Array.from({ length: 30 }, (_, i) => (i % 2 ? s1 : s2).checkRequest(p)));
    expect(r.ok).toHaveLength(10);
    expect(r.err[0].retryAfter).toBeGreaterThanOrEqual(1);
    const c = await settleAll(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? s1 : s2).admit(p, { promptTokens: 1, maxTokens: 1 })),
    );
    expect(c.ok).toHaveLength(3);
    await c.ok[0].settle({ promptTokens: 1, completionTokens: 1 });
    await s2.admit(p, { promptTokens: 1, maxTokens: 1 });
    await s1.close();
    await s2.close();
  });
});

describe("Redis down", () => {
  it("fails closed with 503 busy and a fix, instead of silently dropping limits", async () => {
    const { createServer } = await import("node:net");
    const port = await new Promise<number>((ok) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => ok(p));
      });
    });
    const r = new Redis(`redis://127.0.0.1:${port}`, {
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      lazyConnect: true,
    });
    r.on("error", () => undefined);
    const store = new RedisLimitStore(r);
    await expect(
      store.reserve([{ kind: "rate", key: "x", limit: 1, cost: 1, windowMs: 60_000 }], "l"),
    ).rejects.toMatchObject({
      code: "busy",
      hint: expect.stringMatching(/redisUrl/),
    });
    await store.close();
  });
});
