// Rate limits, concurrency caps and token budgets, checked atomically across all subjects of a request (key, user,
// groups): either every check passes and every reservation is made, or nothing changes. Budgets are *reserved*
// before a call (prompt + max_tokens) and settled with the real usage after, so parallel calls at the edge of a
// budget can never overshoot it. Rates use GCRA (a token bucket stored as one timestamp). Two stores: in-process
// (default) and Redis (Lua scripts, server-side TIME) so several `dajian serve` processes share the same counters.
import type { Redis } from "ioredis";
import { DajianError } from "../core/errors.js";

export type LimitCheck =
  /** GCRA: at most `limit` units per `windowMs`; this call costs `cost` units. */
  | { kind: "rate"; key: string; limit: number; cost: number; windowMs: number }
  /** At most `limit` leases alive at once; a lease lapses after `ttlMs` if never released (crashed process). */
  | { kind: "concurrency"; key: string; limit: number; ttlMs: number }
  /** At most `limit` units in the period named by `key`; the period ends at `resetAt` (epoch ms). */
  | { kind: "budget"; key: string; limit: number; cost: number; resetAt: number };

export type ReserveResult = { ok: true } | { ok: false; retryAfterMs: number; failed: LimitCheck };

export interface LimitStore {
  reserve(checks: LimitCheck[], leaseId: string): Promise<ReserveResult>;
  /** Give back what was reserved but not used (`refund[i]` units for check i) and release concurrency leases. */
  settle(checks: LimitCheck[], leaseId: string, refund: number[]): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- in-process

export class MemoryLimitStore implements LimitStore {
  private readonly tat = new Map<string, number>();
  private readonly leases = new Map<string, Map<string, number>>();
  private readonly used = new Map<string, { n: number; resetAt: number }>();

  // Synchronous body: JS runs it without interleaving, which is what makes check-then-apply atomic here.
  reserveSync(checks: LimitCheck[], leaseId: string, now = Date.now()): ReserveResult {
    for (const c of checks) {
      const wait = this.waitFor(c, now);
      if (wait > 0) return { ok: false, retryAfterMs: wait, failed: c };
    }
    for (const c of checks) {
      if (c.kind === "rate")
        this.tat.set(c.key, Math.max(this.tat.get(c.key) ?? 0, now) + (c.cost * c.windowMs) / c.limit);
      else if (c.kind === "concurrency") {
        let m = this.leases.get(c.key);
        if (!m) this.leases.set(c.key, (m = new Map()));
        m.set(leaseId, now + c.ttlMs);
      } else {
        const u = this.budget(c, now);
        u.n += c.cost;
      }
    }
    return { ok: true };
  }

  private budget(c: Extract<LimitCheck, { kind: "budget" }>, now: number) {
    let u = this.used.get(c.key);
    if (!u || u.resetAt <= now) this.used.set(c.key, (u = { n: 0, resetAt: c.resetAt }));
    return u;
  }

  private waitFor(c: LimitCheck, now: number): number {
    if (c.kind === "rate") {
      if (c.cost > c.limit) return c.windowMs;
      const next = Math.max(this.tat.get(c.key) ?? 0, now) + (c.cost * c.windowMs) / c.limit;
      return Math.max(0, Math.ceil(next - now - c.windowMs));
    }
    if (c.kind === "concurrency") {
      const m = this.leases.get(c.key);
      if (!m) return c.limit > 0 ? 0 : 1000;
      for (const [id, exp] of m) if (exp <= now) m.delete(id);
      return m.size < c.limit ? 0 : 1000;
    }
    const u = this.budget(c, now);
    return u.n + c.cost <= c.limit ? 0 : Math.max(1000, c.resetAt - now);
  }

  async reserve(checks: LimitCheck[], leaseId: string): Promise<ReserveResult> {
    return this.reserveSync(checks, leaseId);
  }

  settleSync(checks: LimitCheck[], leaseId: string, refund: number[]): void {
    checks.forEach((c, i) => {
      if (c.kind === "concurrency") this.leases.get(c.key)?.delete(leaseId);
      else if (c.kind === "rate" && refund[i] > 0) {
        const t = this.tat.get(c.key);
        if (t !== undefined) this.tat.set(c.key, t - (refund[i] * c.windowMs) / c.limit);
      } else if (c.kind === "budget" && refund[i] !== 0) {
        const u = this.used.get(c.key);
        if (u && u.resetAt === c.resetAt) u.n = Math.max(0, u.n - refund[i]);
      }
    });
  }

  async settle(checks: LimitCheck[], leaseId: string, refund: number[]): Promise<void> {
    this.settleSync(checks, leaseId, refund);
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------- Redis

// ARGV: leaseId, then 4 per check: kind, limit, cost, param (windowMs | ttlMs | resetAt). Time from Redis itself,
// so replicas with skewed clocks still agree.
const RESERVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = ARGV[1]
local n = #KEYS
local function check(i)
  local b = (i-1)*4
  return ARGV[2+b], tonumber(ARGV[3+b]), tonumber(ARGV[4+b]), tonumber(ARGV[5+b]), KEYS[i]
end
-- GCRA: the theoretical arrival time after admitting \`cost\` more units
local function nextTat(key, limit, cost, param)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  return tat + cost * param / limit
end
for i = 1, n do
  local kind, limit, cost, param, key = check(i)
  if kind == 'rate' then
    if cost > limit then return {0, i, param} end
    local nxt = nextTat(key, limit, cost, param)
    if nxt - now > param then return {0, i, math.ceil(nxt - now - param)} end
  elseif kind == 'concurrency' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= limit then return {0, i, 1000} end
  else
    local used = tonumber(redis.call('GET', key) or '0')
    if used + cost > limit then
      local wait = param - now
      if wait < 1000 then wait = 1000 end
      return {0, i, wait}
    end
  end
end
for i = 1, n do
  local kind, limit, cost, param, key = check(i)
  if kind == 'rate' then
    local nxt = nextTat(key, limit, cost, param)
    redis.call('SET', key, tostring(nxt), 'PX', math.ceil(nxt - now) + 1000)
  elseif kind == 'concurrency' then
    redis.call('ZADD', key, now + param, lease)
    redis.call('PEXPIRE', key, param + 1000)
  else
    redis.call('INCRBY', key, cost)
    redis.call('PEXPIREAT', key, param + 60000)
  end
end
return {1, 0, 0}
`;

const SETTLE_LUA = `
local lease = ARGV[1]
for i = 1, #KEYS do
  local kind = ARGV[2 + (i-1)*4]
  local limit = tonumber(ARGV[3 + (i-1)*4])
  local refund = tonumber(ARGV[4 + (i-1)*4])
  local param = tonumber(ARGV[5 + (i-1)*4])
  local key = KEYS[i]
  if kind == 'concurrency' then
    redis.call('ZREM', key, lease)
  elseif kind == 'rate' and refund > 0 then
    local tat = tonumber(redis.call('GET', key) or 'nil')
    if tat then redis.call('SET', key, tostring(tat - refund * param / limit), 'KEEPTTL') end
  elseif kind == 'budget' and refund ~= 0 then
    if redis.call('EXISTS', key) == 1 then
      local v = redis.call('DECRBY', key, refund)
      if v < 0 then redis.call('SET', key, '0', 'KEEPTTL') end
    end
  end
end
return 1
`;

type RedisWithScripts = Redis & {
  dajianReserve(numKeys: number, ...args: (string | number)[]): Promise<[number, number, number]>;
  dajianSettle(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

function argsOf(checks: LimitCheck[], leaseId: string, costs: number[], prefix: string): (string | number)[] {
  const keys = checks.map((c) => prefix + c.key);
  const argv: (string | number)[] = [leaseId];
  checks.forEach((c, i) => {
    const param = c.kind === "rate" ? c.windowMs : c.kind === "concurrency" ? c.ttlMs : c.resetAt;
    argv.push(c.kind, c.limit, costs[i], param);
  });
  return [...keys, ...argv];
}

export class RedisLimitStore implements LimitStore {
  private readonly r: RedisWithScripts;

  /** Keys are prefixed so one Redis can serve several deployments. All keys of one call must share a slot on
   * Redis Cluster; use a single-node Redis (or Sentinel) for limits. */
  constructor(
    redis: Redis,
    private readonly prefix = "dajian:lim:",
  ) {
    redis.defineCommand("dajianReserve", { lua: RESERVE_LUA });
    redis.defineCommand("dajianSettle", { lua: SETTLE_LUA });
    this.r = redis as RedisWithScripts;
  }

  async reserve(checks: LimitCheck[], leaseId: string): Promise<ReserveResult> {
    if (checks.length === 0) return { ok: true };
    const costs = checks.map((c) => (c.kind === "concurrency" ? 0 : c.cost));
    let out: [number, number, number];
    try {
      out = await this.r.dajianReserve(checks.length, ...argsOf(checks, leaseId, costs, this.prefix));
    } catch (err) {
      // Fail closed: without the shared counters no limit can be enforced.
      throw new DajianError(
        "busy",
        "the rate-limit store (Redis) is unreachable",
        "check redisUrl and that Redis is running",
        {
          retryAfter: 5,
          cause: err,
        },
      );
    }
    const [ok, idx, wait] = out;
    return ok === 1 ? { ok: true } : { ok: false, retryAfterMs: Number(wait), failed: checks[idx - 1] };
  }

  async settle(checks: LimitCheck[], leaseId: string, refund: number[]): Promise<void> {
    if (checks.length === 0) return;
    await this.r.dajianSettle(checks.length, ...argsOf(checks, leaseId, refund, this.prefix));
  }

  async close(): Promise<void> {
    this.r.disconnect();
  }
}
