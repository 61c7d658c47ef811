// The remote provider against a real local HTTP server speaking the OpenAI wire format, scripted per request to
// succeed, fail with 429/5xx, send garbage, or hang.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { openHomeDb } from "../store/sqlite.js";
import { ModelManager } from "./manager.js";
import { RemoteChatModel, parseRetryAfter } from "./remote.js";
import type { RemoteModelSpec } from "./registry.js";
import { usageSummary } from "./usage.js";

type Handler = (req: IncomingMessage, res: ServerResponse, body: any) => void;
let server: Server;
let base: string;
let script: Handler[] = [];
let seen: { headers: IncomingMessage["headers"]; body: any; closed?: boolean }[] = [];

function sse(
  res: ServerResponse,
  deltas: string[],
  usage?: { prompt_tokens: number; completion_tokens: number },
  finish = "stop",
) {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const d of deltas)
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: d }, finish_reason: null }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: finish }] })}\n\n`);
  if (usage) res.write(`data: ${JSON.stringify({ choices: [], usage })}\n\n`);
  res.end("data: [DONE]\n\n");
}

const ok: Handler = (_q, res) => sse(res, ["Hel", "lo ", "world"], { prompt_tokens: 11, completion_tokens: 3 });

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      const entry: (typeof seen)[number] = { headers: req.headers, body: raw ? JSON.parse(raw) : undefined };
      seen.push(entry);
      res.on("close", () => (entry.closed = !res.writableFinished));
      const h = script.shift() ?? ok;
      h(req, res, entry.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  script = [];
  seen = [];
});

function model(over: Partial<RemoteModelSpec> = {}, env: NodeJS.ProcessEnv = { TEST_KEY: "sk-test-123" }) {
  const spec: RemoteModelSpec = {
    kind: "remote",
    baseURL: base,
    model: "m1",
    apiKeyEnv: "TEST_KEY",
    allowPrivateNetwork: true,
    timeoutMs: 2000,
    ...over,
  };
  return new RemoteChatModel("r", spec, { env, backoffBaseMs: 20 });
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return isDajianError(e) ? e.code : `other: ${(e as Error).message}`;
  }
}

describe("remote OpenAI-compatible provider", () => {
  it("streams deltas, reports usage, sends key + parameters", async () => {
    const m = model();
    const chunks: string[] = [];
    let done: any;
    const schema = { type: "object", properties: { a: { type: "string" } } };
    for await (const c of m.stream([{ role: "user", content: "hi" }], {
      maxTokens: 9,
      temperature: 0.5,
      topP: 0.9,
      seed: 7,
      stop: ["\n\n"],
      jsonSchema: schema,
    })) {
      if (c.type === "delta") chunks.push(c.text);
      else done = c.result;
    }
    expect(chunks.join("")).toBe("Hello world");
    expect(done).toEqual({
      text: "Hello world",
      finishReason: "stop",
      usage: { promptTokens: 11, completionTokens: 3 },
    });
    expect(seen[0].headers.authorization).toBe("Bearer sk-test-123");
    expect(seen[0].body).toMatchObject({
      model: "m1",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 9,
      temperature: 0.5,
      top_p: 0.9,
      seed: 7,
      stop: ["\n\n"],
      response_format: { type: "json_schema", json_schema: { schema } },
    });
  });

  it("accepts a gateway that answers stream requests with one JSON body, and maps finish_reason length", async () => {
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          choices: [{ message: { role: "assistant", content: "你好" }, finish_reason: "length" }],
          usage: { prompt_tokens: 4, completion_tokens: 2 },
        }),
      );
    });
    const r = await model().chat([{ role: "user", content: "hi" }]);
    expect(r).toEqual({ text: "你好", finishReason: "length", usage: { promptTokens: 4, completionTokens: 2 } });
  });

  it("retries 429 (honouring Retry-After) and 5xx with backoff, then succeeds", async () => {
    script.push((_q, res) => {
      res.writeHead(429, { "retry-after": "0", "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "slow down" } }));
    });
    script.push((_q, res) => {
      res.writeHead(500);
      res.end("oops");
    });
    script.push((_q, res) => {
      res.writeHead(503);
      res.end();
    });
    const r = await model().chat([{ role: "user", content: "hi" }]);
    expect(r.text).toBe("Hello world");
    expect(seen).toHaveLength(4);
  });

  it("gives up after maxRetries with the provider's status and message", async () => {
    for (let i = 0; i < 3; i++)
      script.push((_q, res) => {
        res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "bad gateway upstream" } }));
      });
    const err = await model({ maxRetries: 2 })
      .chat([{ role: "user", content: "hi" }])
      .catch((e) => e);
    expect(isDajianError(err, "upstream")).toBe(true);
    expect(err.message).toContain("502: bad gateway upstream");
    expect(seen).toHaveLength(3);
  });

  it("does not wait out a long Retry-After: fails at once with retryAfter for the caller", async () => {
    script.push((_q, res) => {
      res.writeHead(429, { "retry-after": "120" });
      res.end();
    });
    const err = await model()
      .chat([{ role: "user", content: "hi" }])
      .catch((e) => e);
    expect(isDajianError(err, "rate_limited")).toBe(true);
    expect(err.retryAfter).toBe(120);
    expect(seen).toHaveLength(1);
  });

  it("does not retry auth errors, and a missing key env var fails before any request", async () => {
    script.push((_q, res) => {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "invalid api key" } }));
    });
    expect(await code(model().chat([{ role: "user", content: "hi" }]))).toBe("unauthorized");
    expect(seen).toHaveLength(1);
    const err = await model({}, {})
      .chat([{ role: "user", content: "hi" }])
      .catch((e) => e);
    expect(err.code).toBe("unauthorized");
    expect(err.hint).toContain("export TEST_KEY=");
    expect(seen).toHaveLength(1);
  });

  it("turns garbage into a clear upstream error", async () => {
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end("data: {not json\n\n");
    });
    expect(await code(model({ maxRetries: 0 }).chat([{ role: "user", content: "hi" }]))).toBe("upstream");
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<html>login page</html>");
    });
    expect(await code(model({ maxRetries: 0 }).chat([{ role: "user", content: "hi" }]))).toBe("upstream");
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [] }));
    });
    expect(await code(model({ maxRetries: 0 }).chat([{ role: "user", content: "hi" }]))).toBe("upstream");
  });

  it("times out a provider that hangs before answering, and one that stalls mid-stream", async () => {
    script.push(() => {}); // never answers
    const t0 = Date.now();
    const err = await model({ timeoutMs: 300, maxRetries: 0 })
      .chat([{ role: "user", content: "hi" }])
      .catch((e) => e);
    expect(isDajianError(err, "upstream")).toBe(true);
    expect(err.message).toContain("timed out");
    expect(Date.now() - t0).toBeLessThan(10_000);
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: "partial" } }] })}\n\n`); // then silence
    });
    const got: string[] = [];
    const err2 = await (async () => {
      for await (const c of model({ timeoutMs: 300, maxRetries: 0 }).stream([{ role: "user", content: "hi" }]))
        if (c.type === "delta") got.push(c.text);
    })().catch((e) => e);
    expect(got).toEqual(["partial"]);
    expect(err2?.message).toContain("timed out");
  });

  it("abort mid-stream ends with finishReason abort and closes the upstream connection", async () => {
    script.push((_q, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed) return clearInterval(t);
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: `t${i++} ` } }] })}\n\n`);
      }, 20);
      res.on("close", () => clearInterval(t));
    });
    const ac = new AbortController();
    let result: any;
    let n = 0;
    for await (const c of model().stream([{ role: "user", content: "hi" }], { signal: ac.signal })) {
      if (c.type === "delta" && ++n === 3) ac.abort();
      if (c.type === "done") result = c.result;
    }
    expect(result.finishReason).toBe("abort");
    expect(result.text.startsWith("t0 t1 t2")).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen[0].closed).toBe(true);
  });

  it("goes through the outbound guard: a loopback base URL is refused unless the entry allows private networks", async () => {
    expect(await code(model({ allowPrivateNetwork: false }).chat([{ role: "user", content: "hi" }]))).toBe("forbidden");
    expect(seen).toHaveLength(0);
  });

  it("parses Retry-After seconds and dates", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });

  it("records token usage per principal through the model manager", async () => {
    const home = mkdtempSync(join(tmpdir(), "dajian-remote-"));
    const db = openHomeDb(home);
    try {
      const mgr = new ModelManager({ db, home, env: { TEST_KEY: "k" }, remote: { env: { TEST_KEY: "k" } } });
      mgr.registry.add("prov", {
        kind: "remote",
        baseURL: base,
        model: "m1",
        apiKeyEnv: "TEST_KEY",
        allowPrivateNetwork: true,
      });
      const chat = await mgr.chat();
      expect(chat?.name).toBe("prov");
      await chat!.chat([{ role: "user", content: "hi" }], { principalId: "key_42" });
      expect(usageSummary(db)).toEqual([
        { model: "prov", principalId: "key_42", requests: 1, promptTokens: 11, completionTokens: 3 },
      ]);
    } finally {
      db.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
