// The health/metrics listener: a separate port that serves only counters, while the main port does not expose them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type RunningServer } from "./testutil.js";

describe("ops listener (health + metrics on their own port)", () => {
  let s: RunningServer;
  let ops: string;
  beforeAll(async () => {
    s = await startTestServer();
    ops = (await s.server.listenOps({ port: 0 })).url;
  });
  afterAll(async () => s.stop());

  it("serves /health and /metrics on the ops port only, counting the main port's requests", async () => {
    expect(ops).not.toBe(s.url);
    const health = await fetch(`${ops}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });

    await (await fetch(`${s.url}/api/kbs`)).arrayBuffer();
    await (await fetch(`${s.url}/v1/models`)).arrayBuffer();
    const missing = await fetch(`${s.url}/metrics`);
    expect(missing.status).toBe(404); // never on the user-facing port
    const text = await (await fetch(`${ops}/metrics`)).text();
    expect(text).toMatch(/dajian_http_requests_total\{status="2xx"\} (\d+)/);
    expect(Number(/status="2xx"\} (\d+)/.exec(text)![1])).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/dajian_http_requests_total\{status="4xx"\} 1\b/);
    expect(text).toMatch(/dajian_route_requests_total\{route="v1\.models\.list"\} 1\b/);
    expect(text).toMatch(/process_resident_memory_bytes \d+/);
    expect((await fetch(`${ops}/api/kbs`)).status).toBe(404); // the app API is not reachable through it
  });

  it("closes with the server", async () => {
    const t = await startTestServer();
    const url = (await t.server.listenOps({ port: 0 })).url;
    expect((await fetch(`${url}/health`)).status).toBe(200);
    await t.stop();
    await expect(fetch(`${url}/health`)).rejects.toThrow(); // closed with the server
  });
});
