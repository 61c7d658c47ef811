// Real local HTTP servers; the only addresses ever contacted are 127.0.0.1 and ::1. For blocked targets the tests
// assert the refusal happens before any connection (a counting server on the would-be target sees nothing).
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DajianError } from "./errors.js";
import { blockedReason, closeOutbound, safeFetch, setResolverForTests } from "./outbound.js";

interface TestServer {
  server: Server;
  port: number;
  connections: number;
  requests: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[];
}

async function startServer(
  host: string,
  handler: (req: { method: string; url: string }, res: import("node:http").ServerResponse) => void = (_q, r) =>
    r.end("hello"),
): Promise<TestServer> {
  const t: TestServer = { server: createServer(), port: 0, connections: 0, requests: [] };
  t.server.on("connection", () => t.connections++);
  t.server.on("request", (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      t.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      handler({ method: req.method!, url: req.url! }, res);
    });
  });
  await new Promise<void>((r) => t.server.listen(0, host, r));
  t.port = (t.server.address() as AddressInfo).port;
  return t;
}

const servers: TestServer[] = [];
async function srv(host: string, h?: Parameters<typeof startServer>[1]) {
  const s = await startServer(host, h);
  servers.push(s);
  return s;
}

afterEach(() => setResolverForTests());
afterAll(async () => {
  await closeOutbound();
  for (const s of servers) {
    s.server.closeAllConnections();
    await new Promise((r) => s.server.close(r));
  }
});

async function refusal(p: Promise<unknown>): Promise<DajianError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DajianError);
    return e as DajianError;
  }
  throw new Error("expected a refusal");
}

describe("blockedReason", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "carrierGradeNat"],
    ["169.254.169.254", "linkLocal"],
    ["0.0.0.0", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["fc00::1", "uniqueLocal"],
    ["fd12:3456::1", "uniqueLocal"],
    ["fe80::1", "linkLocal"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "ipv4Mapped"],
    ["::ffff:8.8.8.8", "ipv4Mapped"],
    ["::7f00:1", "IPv4-compatible IPv6 address"],
    ["64:ff9b::7f00:1", "rfc6052"],
    ["2002:7f00:1::", "6to4"],
  ])("%s is blocked (%s)", (ip, why) => {
    expect(blockedReason(ip)).toBe(why);
  });
  it.each(["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700::1111"])("%s is public", (ip) => {
    expect(blockedReason(ip)).toBeNull();
  });
});

describe("safeFetch", () => {
  let target: TestServer;
  let target6: TestServer;
  beforeAll(async () => {
    target = await srv("127.0.0.1");
    target6 = await srv("::1");
  });

  it("refuses loopback in every spelling before connecting", async () => {
    const before = target.connections;
    const p = target.port;
    for (const u of [
      `http://127.0.0.1:${p}/`,
      `http://2130706433:${p}/`, // decimal
      `http://0x7f.1:${p}/`, // hex + short form
      `http://0177.0.0.1:${p}/`, // octal
      `http://localhost:${p}/`, // name resolving to loopback
      `http://0.0.0.0:${p}/`,
      `http://[::ffff:127.0.0.1]:${p}/`,
      `http://[::ffff:7f00:1]:${p}/`,
      `http://[::]:${p}/`,
    ]) {
      const e = await refusal(safeFetch(u));
      expect(e.code, u).toBe("forbidden");
      expect(e.hint).toMatch(/outbound\.allowHosts/);
    }
    const e6 = await refusal(safeFetch(`http://[::1]:${target6.port}/`));
    expect(e6.code).toBe("forbidden");
    expect(target.connections).toBe(before);
    expect(target6.connections).toBe(0);
  });

  it("refuses cloud metadata, private and CGNAT literals", async () => {
    for (const u of [
      "http://169.254.169.254/latest/meta-data/",
      "http://10.0.0.1/",
      "http://100.100.100.200/",
      "http://[fd00::1]/",
    ]) {
      expect((await refusal(safeFetch(u, { timeoutMs: 2000 }))).code).toBe("forbidden");
    }
  });

  it("fetches when the target is allowed explicitly, by IP, CIDR or host name", async () => {
    const u = `http://127.0.0.1:${target.port}/x`;
    expect(await (await safeFetch(u, { allowPrivate: true })).text()).toBe("hello");
    expect((await safeFetch(u, { allowHosts: ["127.0.0.1"] })).status).toBe(200);
    expect((await safeFetch(u, { allowHosts: ["127.0.0.0/8"] })).status).toBe(200);
    expect((await safeFetch(`http://localhost:${target.port}/`, { allowHosts: ["localhost"] })).status).toBe(200);
    expect((await safeFetch(`http://[::1]:${target6.port}/`, { allowHosts: ["::1/128"] })).status).toBe(200);
    // an allow-list entry for a different network does not widen access
    expect((await refusal(safeFetch(u, { allowHosts: ["10.0.0.0/8", "other.host"] }))).code).toBe("forbidden");
  });

  it("rejects non-http schemes and credentials in the URL", async () => {
    expect((await refusal(safeFetch("file:///etc/passwd"))).code).toBe("invalid_input");
    expect((await refusal(safeFetch(`http://u:p@127.0.0.1:${target.port}/`, { allowPrivate: true }))).code).toBe(
      "invalid_input",
    );
  });

  it("re-checks every redirect hop and refuses a hop to a blocked address before connecting", async () => {
    const victim = await srv("::1");
    const hop = await srv("127.0.0.1", (_q, r) => {
      r.writeHead(302, { location: `http://[::1]:${victim.port}/secret` });
      r.end();
    });
    const e = await refusal(safeFetch(`http://127.0.0.1:${hop.port}/`, { allowHosts: ["127.0.0.1"] }));
    expect(e.code).toBe("forbidden");
    expect(e.message).toMatch(/::1/);
    expect(hop.requests).toHaveLength(1);
    expect(victim.connections).toBe(0);
  });

  it("strips credentials when a redirect changes host, keeps them on the same origin", async () => {
    const other = await srv("::1");
    const a = await srv("127.0.0.1", (q, r) => {
      if (q.url === "/same") r.writeHead(307, { location: "/final" }).end();
      else if (q.url === "/cross") r.writeHead(302, { location: `http://[::1]:${other.port}/landed` }).end();
      else r.end("final");
    });
    const headers = { authorization: "Bearer sk-secret", cookie: "s=1", "x-api-key": "k", "x-trace": "t" };
    const r1 = await safeFetch(`http://127.0.0.1:${a.port}/same`, { allowPrivate: true, headers });
    expect(await r1.text()).toBe("final");
    expect(a.requests[1].headers.authorization).toBe("Bearer sk-secret");
    const r2 = await safeFetch(`http://127.0.0.1:${a.port}/cross`, { allowPrivate: true, headers });
    expect(r2.status).toBe(200);
    const landed = other.requests[0];
    expect(landed.url).toBe("/landed");
    expect(landed.headers.authorization).toBeUndefined();
    expect(landed.headers.cookie).toBeUndefined();
    expect(landed.headers["x-api-key"]).toBeUndefined();
    expect(landed.headers["x-trace"]).toBe("t");
  });

  it("turns 303 into GET without body, replays 307 bodies, and caps redirect chains", async () => {
    const s = await srv("127.0.0.1", (q, r) => {
      if (q.url === "/see-other") r.writeHead(303, { location: "/done" }).end();
      else if (q.url === "/temp") r.writeHead(307, { location: "/done" }).end();
      else if (q.url.startsWith("/loop")) r.writeHead(302, { location: "/loop" }).end();
      else r.end("ok");
    });
    const base = `http://127.0.0.1:${s.port}`;
    await safeFetch(`${base}/see-other`, { allowPrivate: true, method: "POST", body: "payload" });
    expect(s.requests.at(-1)).toMatchObject({ method: "GET", url: "/done", body: "" });
    await safeFetch(`${base}/temp`, { allowPrivate: true, method: "POST", body: "payload" });
    expect(s.requests.at(-1)).toMatchObject({ method: "POST", url: "/done", body: "payload" });
    const e = await refusal(safeFetch(`${base}/loop`, { allowPrivate: true, maxRedirects: 3 }));
    expect(e.message).toMatch(/too many redirects/);
    const r = await safeFetch(`${base}/loop`, { allowPrivate: true, maxRedirects: 0 });
    expect(r.status).toBe(302);
  });

  it("times out a server that never answers", async () => {
    const hang = await srv("127.0.0.1", () => undefined);
    const t0 = Date.now();
    const e = await refusal(safeFetch(`http://127.0.0.1:${hang.port}/`, { allowPrivate: true, timeoutMs: 300 }));
    expect(e.code).toBe("upstream");
    expect(e.message).toMatch(/timed out/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("connects to the address it checked: a DNS answer that rebinds to loopback is refused at connect", async () => {
    let calls = 0;
    setResolverForTests(async () =>
      calls++ === 0 ? [{ address: "93.184.216.34", family: 4 }] : [{ address: "127.0.0.1", family: 4 }],
    );
    const before = target.connections;
    const e = await refusal(safeFetch(`http://rebind.example:${target.port}/`));
    expect(e.code).toBe("forbidden");
    expect(calls).toBe(2); // pre-check + socket lookup
    expect(target.connections).toBe(before);
    // a name that resolves to a mix of public and private answers is refused outright
    setResolverForTests(async () => [
      { address: "93.184.216.34", family: 4 },
      { address: "10.0.0.5", family: 4 },
    ]);
    expect((await refusal(safeFetch("http://mixed.example/"))).code).toBe("forbidden");
  });

  it("uses the resolved, checked address for an allow-listed name", async () => {
    setResolverForTests(async () => [{ address: "127.0.0.1", family: 4 }]);
    const r = await safeFetch(`http://ollama.internal:${target.port}/api`, { allowHosts: ["ollama.internal"] });
    expect(r.status).toBe(200);
    expect(target.requests.at(-1)!.headers.host).toBe(`ollama.internal:${target.port}`);
  });

  it("honours HTTP_PROXY / NO_PROXY", async () => {
    const seen: string[] = [];
    const proxy = createServer();
    proxy.on("connect", (req, client: Socket, head) => {
      seen.push(req.url!);
      const [h, p] = req.url!.split(/:(?=\d+$)/);
      const up = connect(Number(p), h.replace(/^\[|\]$/g, ""), () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        up.write(head);
        up.pipe(client);
        client.pipe(up);
      });
      up.on("error", () => client.destroy());
    });
    proxy.on("request", (req, res) => {
      seen.push(req.url!);
      res.end("via-proxy");
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const pport = (proxy.address() as AddressInfo).port;
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY };
    try {
      process.env.HTTP_PROXY = `http://127.0.0.1:${pport}`;
      process.env.NO_PROXY = "";
      const r = await safeFetch(`http://127.0.0.1:${target.port}/p`, { allowPrivate: true });
      expect(r.status).toBe(200);
      expect(seen.length).toBe(1);
      expect(seen[0]).toContain(String(target.port));
      // the target is still checked when a proxy is used
      expect((await refusal(safeFetch(`http://127.0.0.1:${target.port}/p`))).code).toBe("forbidden");
      expect(seen.length).toBe(1);
      process.env.NO_PROXY = "localhost,127.0.0.1";
      await safeFetch(`http://127.0.0.1:${target.port}/direct`, { allowPrivate: true });
      expect(seen.length).toBe(1);
      expect(target.requests.at(-1)!.url).toBe("/direct");
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
  });
});
