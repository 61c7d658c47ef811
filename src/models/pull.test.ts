// `pull` against real local HTTP servers serving a GGUF that dajian wrote: Range resume, a server that drops the
// connection mid-file, one that ignores Range, redirects, wrong SHA-256, non-GGUF bodies, hf: refs via
// HF_ENDPOINT, and a forward proxy (HTTP_PROXY).
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { openHomeDb, type SqliteDb } from "../store/sqlite.js";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { pullModel, resolvePullRef } from "./pull.js";
import { ModelRegistry } from "./registry.js";

let dir: string;
let gguf: Buffer;
let sha: string;
let server: Server;
let origin: string;
let log: { path: string; range?: string; auth?: string }[] = [];
const dropped = new Set<string>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-pull-src-"));
  const path = join(dir, "tiny.gguf");
  writeTinyLlamaGguf(path, { seed: 5 });
  gguf = readFileSync(path);
  sha = createHash("sha256").update(gguf).digest("hex");
  server = createServer((req, res) => {
    const url = new URL(req.url!, "http://x");
    log.push({ path: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    const p = url.pathname;
    if (p.startsWith("/redirect/")) {
      res.writeHead(302, { location: p.replace("/redirect/", "/ok/") });
      return res.end();
    }
    if (p.endsWith("/page.gguf")) {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end("<!doctype html><html><body>Sign in to continue</body></html>".repeat(10));
    }
    const known =
      p.startsWith("/ok/") || p.startsWith("/norange/") || p.startsWith("/drop/") || /\/resolve\/main\//.test(p);
    if (!known) {
      res.writeHead(404);
      return res.end("not found");
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (p.startsWith("/drop/") && !dropped.has(p)) {
      // First request: promise the whole file, send 40 %, then cut the connection.
      dropped.add(p);
      res.writeHead(200, { "content-length": gguf.length, "accept-ranges": "bytes" });
      res.write(gguf.subarray(0, Math.floor(gguf.length * 0.4)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (m && !p.startsWith("/norange/")) {
      const start = Number(m[1]);
      if (start >= gguf.length) {
        res.writeHead(416, { "content-range": `bytes */${gguf.length}` });
        return res.end();
      }
      res.writeHead(206, {
        "content-range": `bytes ${start}-${gguf.length - 1}/${gguf.length}`,
        "content-length": gguf.length - start,
      });
      return res.end(gguf.subarray(start));
    }
    res.writeHead(200, { "content-length": gguf.length });
    res.end(gguf);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

let home: string;
let db: SqliteDb;
beforeEach(() => {
  log = [];
  home = mkdtempSync(join(tmpdir(), "dajian-pull-"));
  db = openHomeDb(home);
});
afterEach(() => {
  db.close();
  rmSync(home, { recursive: true, force: true });
});

const base = () => ({ home, db, allowPrivate: true, retryDelayMs: 10, env: {} as NodeJS.ProcessEnv });

describe("dajian pull", () => {
  it("downloads, verifies SHA-256, checks the GGUF header and registers the model", async () => {
    const r = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: sha.toUpperCase() });
    expect(r).toMatchObject({ name: "tiny", bytes: gguf.length, sha256: sha, resumedFrom: 0, attempts: 1 });
    expect(readFileSync(r.path).equals(gguf)).toBe(true);
    expect(existsSync(`${r.path}.part`)).toBe(false);
    const e = new ModelRegistry(db, home, {}).get("tiny");
    expect(e).toMatchObject({
      kind: "local",
      path: r.path,
      sha256: sha,
      source: `${origin}/ok/tiny.gguf`,
      isDefault: true,
    });
    // Pulling again is idempotent: verified from disk, no new download.
    const again = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: sha });
    expect(again.attempts).toBe(0);
    expect(log).toHaveLength(1);
  });

  it("resumes with Range after the server drops the connection mid-file", async () => {
    const r = await pullModel({ ...base(), ref: `${origin}/drop/tiny.gguf`, sha256: sha, name: "resumed" });
    expect(r.attempts).toBe(2);
    expect(log[0].range).toBeUndefined();
    const start = Number(/bytes=(\d+)-/.exec(log[1].range ?? "")?.[1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThan(gguf.length);
    expect(readFileSync(r.path).equals(gguf)).toBe(true);
  });

  it("continues a .part left by an earlier run, and restarts cleanly when the server ignores Range", async () => {
    const dest = join(home, "models", "tiny.gguf");
    writeFileSync(`${dest}.part`, gguf.subarray(0, 1000));
    const r = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: sha });
    expect(r.resumedFrom).toBe(1000);
    expect(log[0].range).toBe("bytes=1000-");
    expect(readFileSync(r.path).equals(gguf)).toBe(true);

    const home2 = mkdtempSync(join(tmpdir(), "dajian-pull-"));
    const db2 = openHomeDb(home2);
    try {
      writeFileSync(join(home2, "models", "tiny.gguf.part"), Buffer.alloc(777, 1)); // garbage prefix
      const r2 = await pullModel({ ...base(), home: home2, db: db2, ref: `${origin}/norange/tiny.gguf`, sha256: sha });
      expect(readFileSync(r2.path).equals(gguf)).toBe(true);
    } finally {
      db2.close();
      rmSync(home2, { recursive: true, force: true });
    }
  });

  it("wrong SHA-256 deletes the download and names the fix; nothing is registered", async () => {
    const err = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: "0".repeat(64) }).catch((e) => e);
    expect(isDajianError(err, "corrupt")).toBe(true);
    expect(err.message).toContain(`got ${sha}`);
    expect(err.hint).toMatch(/deleted/);
    expect(existsSync(join(home, "models", "tiny.gguf"))).toBe(false);
    expect(existsSync(join(home, "models", "tiny.gguf.part"))).toBe(false);
    expect(new ModelRegistry(db, home, {}).list()).toEqual([]);
    const bad = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: "xyz" }).catch((e) => e);
    expect(bad.code).toBe("invalid_input");
  });

  it("follows redirects; refuses HTML pages and 404s with clear errors", async () => {
    const r = await pullModel({ ...base(), ref: `${origin}/redirect/tiny.gguf` });
    expect(log.map((l) => l.path)).toEqual(["/redirect/tiny.gguf", "/ok/tiny.gguf"]);
    expect(r.sha256).toBe(sha);
    const html = await pullModel({ ...base(), ref: `${origin}/ok/page.gguf` }).catch((e) => e);
    expect(html.code).toBe("corrupt");
    expect(existsSync(join(home, "models", "page.gguf"))).toBe(false);
    const missing = await pullModel({ ...base(), ref: `${origin}/nope.gguf` }).catch((e) => e);
    expect(missing.code).toBe("not_found");
    const local = await pullModel({ ...base(), ref: "./model.gguf" }).catch((e) => e);
    expect(local.code).toBe("invalid_input");
    expect(local.hint).toContain("models add");
  });

  it("refuses private targets unless allowed (outbound guard)", async () => {
    const err = await pullModel({ ...base(), allowPrivate: false, ref: `${origin}/ok/tiny.gguf` }).catch((e) => e);
    expect(err.code).toBe("forbidden");
    expect(log).toHaveLength(0);
  });

  it("maps hf:ORG/REPO/FILE to $HF_ENDPOINT/ORG/REPO/resolve/main/FILE and sends HF_TOKEN", async () => {
    expect(resolvePullRef("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf", {}).url).toBe(
      "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf",
    );
    expect(resolvePullRef("hf:o/r@v2/sub/f.gguf", { HF_ENDPOINT: "https://hf-mirror.com/" }).url).toBe(
      "https://hf-mirror.com/o/r/resolve/v2/sub/f.gguf",
    );
    const bad = (() => {
      try {
        resolvePullRef("hf:only/two", {});
      } catch (e) {
        return e as { code: string; hint: string };
      }
    })();
    expect(bad?.code).toBe("invalid_input");
    expect(bad?.hint).toContain("hf:ORG/REPO/FILE.gguf");
    const r = await pullModel({
      ...base(),
      env: { HF_ENDPOINT: origin, HF_TOKEN: "hf_secret" },
      ref: "hf:acme/tiny-GGUF/tiny.gguf",
      sha256: sha,
    });
    expect(log[0]).toMatchObject({ path: "/acme/tiny-GGUF/resolve/main/tiny.gguf", auth: "Bearer hf_secret" });
    expect(r.name).toBe("tiny");
  });

  it("accepts catalog names: NAME[:QUANT] resolves to the catalog's hf: source through $HF_ENDPOINT", async () => {
    const r = await pullModel({
      ...base(),
      env: { HF_ENDPOINT: origin },
      ref: "qwen2.5-0.5b-instruct:Q8_0",
      sha256: sha, // the local server serves a dajian-written GGUF, not the real Qwen file
    });
    expect(log[0].path).toMatch(/^\/Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF\/resolve\/main\/.*q8_0\.gguf$/i);
    expect(r.name).toBe("qwen2.5-0.5b-instruct");
    await expect(pullModel({ ...base(), env: { HF_ENDPOINT: origin }, ref: "no-such-model" })).rejects.toThrow(
      /catalog name/,
    );
  });

  it("honours HTTP_PROXY (a real forward proxy in the test)", async () => {
    const seenByProxy: string[] = [];
    const proxy = createServer((req, res) => {
      // Absolute-form forwarding: GET http://host:port/path
      seenByProxy.push(`${req.method} ${req.url}`);
      const u = new URL(req.url!);
      const up = httpRequest(
        { host: u.hostname, port: u.port, path: u.pathname + u.search, method: req.method, headers: req.headers },
        (ur) => {
          res.writeHead(ur.statusCode!, ur.headers);
          ur.pipe(res);
        },
      );
      req.pipe(up);
    });
    proxy.on("connect", (req, client: Socket, head) => {
      seenByProxy.push(`CONNECT ${req.url}`);
      const [h, p] = req.url!.split(":");
      const up = connect(Number(p), h, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        up.write(head);
        up.pipe(client);
        client.pipe(up);
      });
      up.on("error", () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const saved = {
      HTTP_PROXY: process.env.HTTP_PROXY,
      NO_PROXY: process.env.NO_PROXY,
      http_proxy: process.env.http_proxy,
      no_proxy: process.env.no_proxy,
    };
    process.env.HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    delete process.env.NO_PROXY;
    delete process.env.no_proxy;
    delete process.env.http_proxy;
    try {
      const r = await pullModel({ ...base(), ref: `${origin}/ok/tiny.gguf`, sha256: sha, name: "via-proxy" });
      expect(r.sha256).toBe(sha);
      expect(seenByProxy.length).toBeGreaterThan(0);
      expect(seenByProxy[0]).toContain(origin.replace("http://", ""));
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
  });
});
