// Server-level security through real HTTP: safe defaults (loopback, DNS rebinding, cross-site), sessions with
// cookies + CSRF, keys over the API, 429 + Retry-After, and fuzzed Authorization headers / JSON bodies.
import { request as httpRequest } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type DajianConfig } from "../core/config.js";
import { Security } from "../security/service.js";
import { LOCAL_PRINCIPAL } from "../security/types.js";
import { createServer } from "./server.js";
import { startTestServer, type RunningServer } from "./testutil.js";

process.env.DAJIAN_SCRYPT_N = "1024";
const PW = "correct horse battery";

/** Raw HTTP so the test controls Host/Origin exactly (fetch forbids setting Host). */
function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  const u = new URL(url);
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>(
    (resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
        let b = "";
        res.on("data", (c) => (b += c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
      });
      req.on("error", reject);
      if (body) req.write(body);
      req.end();
    },
  );
}

describe("safe defaults (auth off)", () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startTestServer({ config: DEFAULT_CONFIG });
  });
  afterAll(async () => s?.stop());

  it("refuses a non-loopback bind while auth is off, naming how to enable auth", async () => {
    const home = mkdtempSync(join(tmpdir(), "dj-sec-"));
    const srv = await createServer({ home, config: DEFAULT_CONFIG, webDir: false });
    try {
      await expect(srv.listen({ host: "0.0.0.0", port: 0 })).rejects.toMatchObject({
        code: "forbidden",
        hint: expect.stringMatching(/DAJIAN_AUTH=1.*dajian keys create --name admin --role admin/s),
      });
      await expect(srv.listen({ host: "::", port: 0 })).rejects.toThrow(/authentication off/);
    } finally {
      await srv.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("answers only loopback Host names (DNS rebinding) and same-origin browsers", async () => {
    const port = new URL(s.url).port;
    expect((await raw(s.url, "GET", "/api/kbs", { host: `127.0.0.1:${port}` })).status).toBe(200);
    expect((await raw(s.url, "GET", "/api/kbs", { host: `localhost:${port}` })).status).toBe(200);
    const rebound = await raw(s.url, "GET", "/api/kbs", { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/allowedHosts/);
    const cross = await raw(
      s.url,
      "POST",
      "/api/kbs",
      { host: `127.0.0.1:${port}`, origin: "http://attacker.example", "content-type": "application/json" },
      JSON.stringify({ name: "pwned" }),
    );
    expect(cross.status).toBe(403);
    const same = await raw(
      s.url,
      "POST",
      "/api/kbs",
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}`, "content-type": "application/json" },
      JSON.stringify({ name: "mine" }),
    );
    expect(same.status).toBe(201);
    const kbs = await (await fetch(`${s.url}/api/kbs`)).text();
    expect(kbs).not.toContain("pwned");
  });

  it("ignores client routing overrides (api_base/base_url) in request bodies", async () => {
    // A body field cannot make the server contact another host: the schema rejects unknown routing fields on app
    // routes, and /v1 never reads them. 404 model-not-found proves the request was handled locally.
    const r = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-x",
        api_base: "http://169.254.169.254/",
        base_url: "http://169.254.169.254/",
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    expect(r.status).toBe(404);
  });
});

describe("input checks and attack-surface inventory", () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startTestServer({ config: DEFAULT_CONFIG });
    expect(
      (
        await fetch(`${s.url}/api/kbs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: '{"name":"up"}',
        })
      ).status,
    ).toBe(201);
  });
  afterAll(async () => s?.stop());

  async function uploadJob(name: string, bytes: Uint8Array): Promise<{ status: string; error?: string }> {
    const fd = new FormData();
    fd.append("file", new Blob([Buffer.from(bytes)]), name);
    const r = await fetch(`${s.url}/api/kbs/up/documents`, { method: "POST", body: fd });
    expect(r.status).toBe(202);
    const id = ((await r.json()) as { jobs: { id: string }[] }).jobs[0].id;
    for (let i = 0; i < 300; i++) {
      const j = (await (await fetch(`${s.url}/api/jobs/${id}`)).json()) as { status: string; error?: string };
      if (j.status === "done" || j.status === "failed") return j;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error("job did not finish");
  }

  it("file type is decided by content (magic bytes), not by the extension", async () => {
    const elf = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...new Array(64).fill(0)]);
    const bad = await uploadJob("report.pdf", elf);
    expect(bad.status).toBe("failed");
    expect(bad.error).toMatch(/executable/);
    const fakePdf = await uploadJob("invoice.pdf", new TextEncoder().encode("just some plain words, not a PDF at all"));
    expect(fakePdf.status).toBe("done"); // read as the text it really is, never handed to the PDF parser as a PDF
  });

  it("no HTTP route can upload, create or change models (GGUF files reach the server only through the CLI)", async () => {
    const { ROUTES } = await import("./routes.js");
    for (const r of ROUTES) if (r.path.includes("/models")) expect(r.method, r.id).toBe("GET");
  });

  it("the server never runs shell commands and ships no default credentials", async () => {
    const { readdirSync, readFileSync } = await import("node:fs");
    const dir = import.meta.dirname;
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".ts") && !x.endsWith(".test.ts") && x !== "testutil.ts"))
      expect(readFileSync(join(dir, f), "utf8"), f).not.toMatch(/child_process|\bexecSync\b|\bspawn\(/);
    // a fresh home with auth on has no users and no keys: nothing works until an operator creates a key
    const home = mkdtempSync(join(tmpdir(), "dj-sec-"));
    const fresh = await startTestServer({
      home,
      config: { ...DEFAULT_CONFIG, server: { ...DEFAULT_CONFIG.server, auth: true } },
    });
    try {
      for (const pw of ["admin", "123456", "password", "root"]) {
        const r = await fetch(`${fresh.url}/api/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name: pw === "root" ? "root" : "admin", password: pw }),
        });
        expect(r.status).toBe(401);
      }
      expect((await fetch(`${fresh.url}/api/kbs`)).status).toBe(401);
      expect((await fetch(`${fresh.url}/v1/models`)).status).toBe(401);
    } finally {
      await fresh.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("auth on", () => {
  let s: RunningServer;
  let sec: Security;
  let home: string;
  let admin: string;
  const config: DajianConfig = { ...DEFAULT_CONFIG, server: { ...DEFAULT_CONFIG.server, auth: true } };

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "dj-sec-"));
    sec = Security.open(home, config);
    admin = (await sec.createKey(LOCAL_PRINCIPAL, { name: "admin", role: "admin" })).key;
    await sec.addUser(LOCAL_PRINCIPAL, "bob", "member", PW);
    s = await startTestServer({ home, config });
    const r = await fetch(`${s.url}/api/kbs`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "docs" }),
    });
    expect(r.status).toBe(201);
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "user", name: "bob", kb: "docs", action: "read" }, true);
  });
  afterAll(async () => {
    await s?.stop();
    await sec?.close();
    rmSync(home, { recursive: true, force: true });
  });

  it("may bind a non-loopback address once auth is on", () => {
    expect(() => s.server.context.security.checkListen("0.0.0.0")).not.toThrow();
  });

  it("web login: HttpOnly SameSite cookie, CSRF token required for state changes, cross-site refused", async () => {
    const bad = await fetch(`${s.url}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bob", password: "wrong password" }),
    });
    expect(bad.status).toBe(401);
    const r = await fetch(`${s.url}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bob", password: PW }),
    });
    expect(r.status).toBe(200);
    const cookies = r.headers.getSetCookie();
    const session = cookies.find((c) => c.startsWith("dajian_session="))!;
    expect(session).toMatch(/HttpOnly/);
    expect(session).toMatch(/SameSite=Strict/);
    expect(session).not.toMatch(/Secure/); // plain http in this test; https or security.secureCookies adds it
    const { csrfToken } = (await r.json()) as { csrfToken: string };
    const cookie = cookies.map((c) => c.split(";")[0]).join("; ");
    const me = await fetch(`${s.url}/api/auth/me`, { headers: { cookie } });
    expect(await me.json()).toMatchObject({ kind: "user", name: "bob", role: "member" });
    const search = (headers: Record<string, string>) =>
      fetch(`${s.url}/api/kbs/docs/search`, {
        method: "POST",
        headers: { cookie, "content-type": "application/json", ...headers },
        body: JSON.stringify({ query: "x" }),
      });
    expect((await search({})).status).toBe(403); // no CSRF token
    expect((await search({ "x-csrf-token": "forged" })).status).toBe(403);
    expect((await search({ "x-csrf-token": csrfToken })).status).toBe(200);
    const port = new URL(s.url).port;
    const cross = await raw(
      s.url,
      "POST",
      "/api/kbs/docs/search",
      {
        host: `127.0.0.1:${port}`,
        cookie,
        "x-csrf-token": csrfToken,
        origin: "http://evil.example",
        "content-type": "application/json",
      },
      JSON.stringify({ query: "x" }),
    );
    expect(cross.status).toBe(403);
    // logout ends the session
    await fetch(`${s.url}/api/auth/logout`, { method: "POST", headers: { cookie, "x-csrf-token": csrfToken } });
    expect((await fetch(`${s.url}/api/auth/me`, { headers: { cookie } })).status).toBe(401);
  });

  it("keys over the API: created with the secret once, usable, listed without it, revoked", async () => {
    const h = { authorization: `Bearer ${admin}`, "content-type": "application/json" };
    const r = await fetch(`${s.url}/api/keys`, {
      method: "POST",
      headers: h,
      body: JSON.stringify({ name: "app", role: "api_client", kbs: ["docs"], limits: { rpm: 3 } }),
    });
    expect(r.status).toBe(201);
    const k = (await r.json()) as { id: string; key: string };
    const list = await (await fetch(`${s.url}/api/keys`, { headers: h })).text();
    expect(list).toContain(k.id);
    expect(list).not.toContain(k.key);
    const use = () =>
      fetch(`${s.url}/api/kbs/docs/search`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify({ query: "x" }),
      });
    for (let i = 0; i < 3; i++) {
      const ok = await use();
      expect(ok.status, await ok.text()).toBe(200);
    }
    const limited = await use();
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await limited.json()) as { error: { type: string } }).error.type).toBe("rate_limit_error");
    const auth = { authorization: `Bearer ${admin}` };
    expect((await fetch(`${s.url}/api/keys/${k.id}`, { method: "DELETE", headers: auth })).status).toBe(200);
    expect((await use()).status).toBe(401);
    const audit = (await (await fetch(`${s.url}/api/audit?limit=1000`, { headers: h })).json()) as {
      entries: { action: string; detail: unknown }[];
    };
    const actions = audit.entries.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["key.create", "key.revoke", "login", "login.failed", "kb.create"]));
    expect(JSON.stringify(audit)).not.toContain(k.key);
    expect(await (await fetch(`${s.url}/api/audit/verify`, { headers: h })).json()).toMatchObject({ ok: true });
  });

  it("race: 40 parallel requests against a 10-per-minute key → exactly 10 pass", async () => {
    const k = await sec.createKey(LOCAL_PRINCIPAL, { name: "race", role: "member", user: "bob", limits: { rpm: 10 } });
    const res = await Promise.all(
      Array.from({ length: 40 }, () => fetch(`${s.url}/api/kbs`, { headers: { authorization: `Bearer ${k.key}` } })),
    );
    expect(res.filter((r) => r.status === 200)).toHaveLength(10);
    expect(res.filter((r) => r.status === 429)).toHaveLength(30);
  });

  it("fuzzed Authorization headers never authenticate and never crash the server", async () => {
    const port = new URL(s.url).port;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ maxLength: 80 }).map((x) => `Bearer ${x}`),
          fc.string({ maxLength: 80 }).map((x) => `Bearer dj_${x}`),
          fc.constant(`Bearer ${admin.slice(0, -1)}`),
          fc.constant(`Bearer ${admin} ${admin}`),
          fc.constant("Bearer dj_' OR '1'='1' --"), // SQL injection (LiteLLM CVE-2026-42208 class)
          fc.constant(`Bearer ${"dj_" + "A".repeat(5000)}`),
          fc.constant(`Basic ${Buffer.from("admin:admin").toString("base64")}`),
        ),
        async (value) => {
          const v = value.replace(/[^\t\x20-\x7e]/g, "");
          const r = await raw(s.url, "GET", "/api/kbs", { host: `127.0.0.1:${port}`, authorization: v });
          expect(r.status).toBe(401);
          expect(r.body).toMatch(/"error"/);
        },
      ),
      { numRuns: 150 },
    );
    expect((await fetch(`${s.url}/api/health`)).status).toBe(200);
  });

  it("fuzzed JSON bodies on every body route get 4xx, never 5xx", async () => {
    const routes = [
      "/v1/chat/completions",
      "/v1/embeddings",
      "/api/kbs",
      "/api/kbs/docs/search",
      "/api/kbs/docs/ask",
      "/api/keys",
      "/api/users",
      "/api/grants",
      "/api/auth/login",
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.oneof(fc.json(), fc.string({ maxLength: 200 })),
        async (path, body) => {
          const r = await fetch(s.url + path, {
            method: "POST",
            headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
            body,
          });
          expect(r.status, `${path} ${body.slice(0, 100)} → ${r.status}`).toBeLessThan(500);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("an oversized body is refused with 413 before any handler runs", async () => {
    const r = await fetch(`${s.url}/api/kbs/docs/search`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ query: "x".repeat(2 * 1024 * 1024) }),
    });
    expect(r.status).toBe(413);
  });
});
