// npm run bench:security — added latency of authentication + authorization + limits per request.
// Two servers in one process, same run: auth on (Bearer key of a member with a KB grant, group membership, rpm,
// tpm and budget limits configured, so every layer runs) vs auth off (local mode), same route
// (GET /api/kbs/bench/documents: a KB read permission check plus the document filter). Closed-loop clients over
// keep-alive connections at 1, 16 and 64 concurrency; rounds alternate between the two servers to cancel drift.
// Besides client-side latency (which at high concurrency includes queueing behind every other request and any
// other load on the machine), the time spent inside the security hooks themselves is measured per request.
// Target: p99 added ≤ 2 ms.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { DEFAULT_CONFIG, type DajianConfig } from "../src/core/config.js";
import { Security } from "../src/security/service.js";
import { LOCAL_PRINCIPAL } from "../src/security/types.js";
import { defaultSecurity, type SecurityHooks } from "../src/server/auth.js";
import { createServer, type DajianServer } from "../src/server/server.js";

/** Per-request time spent in authenticate + authorize + documentFilter (summed by request). */
const hookTimes = { open: [] as number[], secure: [] as number[] };
let current: number[] = [];

function timed(h: SecurityHooks, sink: () => number[]): SecurityHooks {
  const pending = new WeakMap<object, number>();
  const add = (req: object, ms: number) => pending.set(req, (pending.get(req) ?? 0) + ms);
  let lastReq: object | undefined;
  return {
    ...h,
    async authenticate(req, route) {
      const t = performance.now();
      try {
        return await h.authenticate(req, route);
      } finally {
        add(req, performance.now() - t);
        lastReq = req;
      }
    },
    async authorize(p, route, res) {
      const t = performance.now();
      try {
        return await h.authorize(p, route, res);
      } finally {
        if (lastReq) add(lastReq, performance.now() - t);
      }
    },
    documentFilter(p, kb) {
      const t = performance.now();
      try {
        return h.documentFilter(p, kb);
      } finally {
        if (lastReq) {
          sink().push((pending.get(lastReq) ?? 0) + performance.now() - t);
          pending.delete(lastReq);
        }
      }
    },
  };
}

const LEVELS = (process.env.LEVELS ?? "1,16,64").split(",").map(Number);
const PER_ROUND = Number(process.env.PER_ROUND ?? 500);
const ROUNDS = Number(process.env.ROUNDS ?? 10);
const PATH = "/api/kbs/bench/documents";

async function start(auth: boolean): Promise<{ server: DajianServer; url: string; home: string; key?: string }> {
  const home = mkdtempSync(join(tmpdir(), "dj-bench-sec-"));
  const config: DajianConfig = { ...DEFAULT_CONFIG, server: { ...DEFAULT_CONFIG.server, auth } };
  let key: string | undefined;
  if (auth) {
    const sec = Security.open(home, config);
    await sec.addUser(LOCAL_PRINCIPAL, "bob", "member");
    sec.addGroup(LOCAL_PRINCIPAL, "staff");
    sec.setMembership(LOCAL_PRINCIPAL, "staff", "bob", true);
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "group", name: "staff", kb: "bench", action: "read" }, true);
    sec.setGrant(
      LOCAL_PRINCIPAL,
      { subject: "group", name: "staff", kb: "bench", document: "hr.md", action: "read" },
      true,
    );
    sec.setLimits(LOCAL_PRINCIPAL, { kind: "group", name: "staff" }, { rpm: 1e9, tpm: 1e12 });
    sec.setLimits(LOCAL_PRINCIPAL, { kind: "user", name: "bob" }, { rpm: 1e9, dailyTokens: 1e12 });
    key = (await sec.createKey(LOCAL_PRINCIPAL, { name: "bench", role: "member", user: "bob", limits: { rpm: 1e9 } }))
      .key;
    await sec.close();
  }
  const security = timed(defaultSecurity(home, config), () => current);
  const server = await createServer({ home, config, webDir: false, security });
  const { url } = await server.listen({ host: "127.0.0.1", port: 0 });
  await server.context.services.kbs.create("bench");
  return { server, url, home, key };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function run(pool: Pool, key: string | undefined, concurrency: number, n: number, out: number[]): Promise<void> {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  let left = n;
  async function worker() {
    while (left-- > 0) {
      const t0 = process.hrtime.bigint();
      const r = await pool.request({ method: "GET", path: PATH, headers });
      await r.body.text();
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
}

const open = await start(false);
const secure = await start(true);
const pools = { open: new Pool(open.url, { connections: 64 }), secure: new Pool(secure.url, { connections: 64 }) };

console.log(`bench:security — ${PATH}, ${ROUNDS} alternating rounds × ${PER_ROUND} requests per level\n`);
const rows: string[][] = [];
for (const c of LEVELS) {
  const lat = { open: [] as number[], secure: [] as number[] };
  current = [];
  await run(pools.open, undefined, c, 300, []); // warm-up
  await run(pools.secure, secure.key, c, 300, []);
  hookTimes.open = [];
  hookTimes.secure = [];
  for (let r = 0; r < ROUNDS; r++) {
    current = hookTimes.open;
    await run(pools.open, undefined, c, PER_ROUND, lat.open);
    current = hookTimes.secure;
    await run(pools.secure, secure.key, c, PER_ROUND, lat.secure);
  }
  const h50 = pct(hookTimes.secure, 50) - pct(hookTimes.open, 50);
  const h99 = pct(hookTimes.secure, 99) - pct(hookTimes.open, 99);
  const o50 = pct(lat.open, 50);
  const o99 = pct(lat.open, 99);
  const s50 = pct(lat.secure, 50);
  const s99 = pct(lat.secure, 99);
  rows.push([
    String(c),
    o50.toFixed(3),
    s50.toFixed(3),
    (s50 - o50).toFixed(3),
    o99.toFixed(3),
    s99.toFixed(3),
    (s99 - o99).toFixed(3),
    (s99 / o99).toFixed(2),
    (h50 * 1000).toFixed(0),
    (h99 * 1000).toFixed(0),
    s99 - o99 <= 2 ? "yes" : "NO",
  ]);
}
const head = [
  "clients",
  "p50 off ms",
  "p50 on ms",
  "p50 added",
  "p99 off ms",
  "p99 on ms",
  "p99 added",
  "p99 ratio",
  "hook p50 added µs",
  "hook p99 added µs",
  "p99 added ≤2ms",
];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((x, i) => x.padStart(w[i])).join("  ");
console.log(line(head));
for (const r of rows) console.log(line(r));
const { loadavg, cpus } = await import("node:os");
console.log(
  `\nmachine: ${cpus().length} cores, load average ${loadavg()[0].toFixed(1)} (client, both servers and any other load share them)`,
);

await pools.open.close();
await pools.secure.close();
for (const s of [open, secure]) {
  await s.server.close();
  rmSync(s.home, { recursive: true, force: true });
}
