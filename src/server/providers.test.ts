// A misbehaving OpenAI-compatible provider behind `dajian serve`, seen through the official openai SDK: one that
// accepts the connection and never answers, one that answers garbage (non-JSON body, non-JSON event, a stream cut
// mid-event). Each gives a clear OpenAI-style error, the server stays up, the upstream connection is closed, and
// the next request through the same model works.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelRegistry } from "../models/registry.js";
import { openHomeDb } from "../store/sqlite.js";
import { startTestServer, type RunningServer } from "./testutil.js";

type Mode = "ok" | "hang" | "html" | "bad-event" | "truncated" | "reset";
let mode: Mode = "ok";
let upstream: Server;
/** Upstream requests whose connection is still open (a keep-alive socket between requests is not counted). */
const open = new Set<ServerResponse>();
let s: RunningServer;
let client: OpenAI;

const chunk = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

function provider(_req: IncomingMessage, res: ServerResponse) {
  switch (mode) {
    case "ok":
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk("Hello "));
      res.write(chunk("there", "stop"));
      res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 2 } })}\n\n`);
      res.end("data: [DONE]\n\n");
      return;
    case "hang":
      return; // connection accepted, request read, never a byte back
    case "html":
      res.writeHead(200, { "content-type": "application/json" });
      res.end("<html><body>502 Bad Gateway</body></html>");
      return;
    case "bad-event":
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end("data: {this is not json\n\n");
      return;
    case "truncated": // a first delta, then half an event and the connection ends
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk("Hel"));
      res.end('data: {"choices":[{"index":0,"delta":{"content":"lo');
      return;
    case "reset": // a first delta, then the TCP connection is torn down
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk("Hel"));
      setTimeout(() => res.socket?.destroy(), 30);
      return;
  }
}

beforeAll(async () => {
  upstream = createServer((req, res) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    req.resume();
    req.on("end", () => provider(req, res));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const home = mkdtempSync(join(tmpdir(), "dj-prov-"));
  const db = openHomeDb(home);
  new ModelRegistry(db, home).add("flaky", {
    kind: "remote",
    baseURL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`,
    model: "m",
    allowPrivateNetwork: true,
    timeoutMs: 400,
    maxRetries: 1,
  });
  db.close();
  s = await startTestServer({ home });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused-locally", maxRetries: 0, timeout: 30_000 });
});

afterAll(async () => {
  await s?.stop();
  upstream?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
});

const msgs = [{ role: "user" as const, content: "hi" }];

async function apiError(p: Promise<unknown>): Promise<APIError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(APIError);
  return e as APIError;
}

async function streamText(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) {
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  return text;
}

/** The same model answers normally again, and no upstream request is left hanging open. */
async function recovers() {
  mode = "ok";
  const r = await client.chat.completions.create({ model: "flaky", messages: msgs });
  expect(r.choices[0].message.content).toBe("Hello there");
  expect(await streamText(await client.chat.completions.create({ model: "flaky", messages: msgs, stream: true }))).toBe(
    "Hello there",
  );
  for (let i = 0; i < 100 && open.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  expect(open.size).toBe(0);
}

describe("a provider that hangs or answers garbage, through dajian serve", () => {
  it("hangs: 502 'timed out' (non-stream and stream), retried once, then the next request works", async () => {
    mode = "hang";
    const t0 = Date.now();
    const e = await apiError(client.chat.completions.create({ model: "flaky", messages: msgs }));
    expect(e.status).toBe(502);
    expect(e.type).toBe("server_error");
    expect(e.message).toMatch(/model "flaky" timed out after 400 ms/);
    expect(Date.now() - t0).toBeLessThan(20_000); // bounded: 2 attempts × 400 ms + backoff
    // stream: the error comes before any event, so it keeps its HTTP status
    const e2 = await apiError(client.chat.completions.create({ model: "flaky", messages: msgs, stream: true }));
    expect(e2.status).toBe(502);
    expect(e2.message).toMatch(/timed out/);
    await recovers();
  });

  it("a non-JSON body and a non-JSON event: 502 naming the fix", async () => {
    mode = "html";
    const e = await apiError(client.chat.completions.create({ model: "flaky", messages: msgs }));
    expect(e.status).toBe(502);
    expect(e.message).toMatch(/not JSON.*base URL/);
    mode = "bad-event";
    const e2 = await apiError(client.chat.completions.create({ model: "flaky", messages: msgs, stream: true }));
    expect(e2.status).toBe(502);
    expect(e2.message).toMatch(/stream event that is not JSON/);
    await recovers();
  });

  it("a stream cut mid-event or reset: the client gets the text so far, then an error — never a silent 'stop'", async () => {
    for (const m of ["truncated", "reset"] as const) {
      mode = m;
      // non-stream: the whole answer is known to be broken → 502
      const e = await apiError(client.chat.completions.create({ model: "flaky", messages: msgs }));
      expect(e.status, m).toBe(502);
      expect(e.message, m).toMatch(m === "truncated" ? /stopped before the answer finished/ : /failed mid-answer/);
      // stream: the first delta was already passed on; the SDK then raises the error event
      let got = "";
      const stream = await client.chat.completions.create({ model: "flaky", messages: msgs, stream: true });
      const err = await (async () => {
        for await (const c of stream) got += c.choices[0]?.delta?.content ?? "";
      })().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(got, m).toBe("Hel");
      expect(err, m).toBeInstanceOf(APIError);
      expect((err as APIError).message, m).toMatch(/model "flaky"/);
    }
    await recovers();
  });
});
