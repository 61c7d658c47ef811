// App API and HTTP hygiene through real HTTP on a real home dir: knowledge bases, multipart uploads streamed to
// disk with a size limit, ingest progress over SSE and polling, search shape, downloads, error shapes and limits.
import { existsSync, readdirSync } from "node:fs";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type DajianConfig } from "../core/config.js";
import { localSecurity } from "./auth.js";
import { ROUTES, type RouteSpec } from "./routes.js";
import { checkRouteTable, createServer } from "./server.js";
import { jsonPost, readSse, startTestServer, type RunningServer } from "./testutil.js";

const config: DajianConfig = {
  ...DEFAULT_CONFIG,
  server: { ...DEFAULT_CONFIG.server, maxBodyBytes: 64 * 1024 },
  ingest: { ...DEFAULT_CONFIG.ingest, maxFileBytes: 200 * 1024 },
};

const POLICY_EN =
  "# Leave policy\n\nAnnual leave is fifteen days per year. Employees apply three days in advance.\n\n" +
  "## Office\n\nThe office opens at nine in the morning and closes at six.\n";
const POLICY_ZH = "# 假期制度\n\n员工每年有十五天带薪年假。请假需要提前三天向经理申请。\n\n公司总部位于上海。\n";

let s: RunningServer;

beforeAll(async () => {
  s = await startTestServer({ config });
});
afterAll(async () => {
  await s?.stop();
});

function upload(kb: string, files: { name: string; body: string | Uint8Array }[]) {
  const fd = new FormData();
  for (const f of files) fd.append("file", new Blob([f.body as BlobPart]), f.name);
  return fetch(`${s.url}/api/kbs/${encodeURIComponent(kb)}/documents`, { method: "POST", body: fd });
}

describe("route table", () => {
  it("every route has a handler, an action and a resource kind; body routes have schemas", () => {
    expect(() => checkRouteTable()).not.toThrow();
    for (const r of ROUTES as readonly RouteSpec[]) {
      expect(r.action, r.id).toBeTruthy();
      expect(r.resource, r.id).toBeTruthy();
      if (r.method === "POST" && !("multipart" in r && r.multipart)) expect(r.schema?.body, r.id).toBeDefined();
      if (r.path.includes(":")) expect(r.schema?.params, r.id).toBeDefined();
    }
  });

  it("a handler without a table entry is refused", () => {
    expect(() => checkRouteTable((ROUTES as readonly RouteSpec[]).filter((r) => r.id !== "api.search"))).toThrow(
      /api.search/,
    );
  });

  it("refuses a non-loopback bind while auth is off", async () => {
    const srv = await createServer({ home: s.home, config, webDir: false, security: localSecurity(config) });
    await expect(srv.listen({ host: "0.0.0.0", port: 0 })).rejects.toThrow(/auth/);
    await srv.close();
  });
});

describe("knowledge bases and documents", () => {
  it("creates, lists, rejects duplicates and bad names", async () => {
    const r = await jsonPost(`${s.url}/api/kbs`, { name: "hr" });
    expect(r.status).toBe(201);
    expect((await r.json()).kb.name).toBe("hr");
    const dup = await jsonPost(`${s.url}/api/kbs`, { name: "hr" });
    expect(dup.status).toBe(409);
    const bad = await jsonPost(`${s.url}/api/kbs`, { name: "../x" });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toMatch(/name/);
    const list = await (await fetch(`${s.url}/api/kbs`)).json();
    expect(list.kbs.map((k: { name: string }) => k.name)).toEqual(["hr"]);
  });

  it("uploads files, reports ingest progress over SSE and polling, then searches with the CLI's shape", async () => {
    const r = await upload("hr", [
      { name: "policy.md", body: POLICY_EN },
      { name: "dir/../假期.md", body: POLICY_ZH },
    ]);
    expect(r.status).toBe(202);
    const { jobs } = await r.json();
    expect(jobs.map((j: { document: string }) => j.document)).toEqual(["policy.md", "假期.md"]);

    // SSE: progress frames then one "end" frame with the final state.
    const ev = await fetch(`${s.url}/api/jobs/${jobs[1].id}/events`);
    expect(ev.headers.get("content-type")).toMatch(/text\/event-stream/);
    const frames = [];
    for await (const f of readSse(ev)) frames.push(f);
    const last = frames.at(-1)!;
    expect(last.event).toBe("end");
    const end = JSON.parse(last.data);
    expect(end.status).toBe("done");
    expect(end.result.chunks).toBeGreaterThan(0);

    await s.server.context.jobs.idle();
    const polled = await (await fetch(`${s.url}/api/jobs/${jobs[0].id}`)).json();
    expect(polled.status).toBe("done");
    expect(polled.progress.done).toBe(polled.progress.total);

    const docs = (await (await fetch(`${s.url}/api/kbs/hr/documents`)).json()).documents;
    expect(docs.map((d: { name: string }) => d.name).sort()).toEqual(["policy.md", "假期.md"].sort());
    // uploads are removed from the staging dir once ingested
    expect(readdirSync(s.server.context.uploadDir)).toEqual([]);

    const res = await jsonPost(`${s.url}/api/kbs/hr/search`, { query: "年假 多少天", topK: 3 });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(Object.keys(body)).toEqual(["results"]);
    expect(body.results[0].source.document).toBe("假期.md");
    expect(body.results[0].text).toContain("十五天");
    expect(Object.keys(body.results[0]).sort()).toEqual(["score", "source", "text"]);

    const en = await (await jsonPost(`${s.url}/api/kbs/hr/search`, { query: "when does the office open" })).json();
    expect(en.results[0].source.document).toBe("policy.md");
    expect(en.results[0].source.heading).toMatch(/Office/);
  });

  it("downloads the original bytes with a safe content-disposition", async () => {
    const docs = (await (await fetch(`${s.url}/api/kbs/hr/documents`)).json()).documents;
    const zh = docs.find((d: { name: string }) => d.name === "假期.md");
    const r = await fetch(`${s.url}/api/kbs/hr/documents/${zh.id}/file`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe(POLICY_ZH);
    expect(r.headers.get("content-disposition")).toContain(`filename*=UTF-8''${encodeURIComponent("假期.md")}`);
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("rejects an upload over ingest.maxFileBytes with 413 and leaves no file behind", async () => {
    const big = new Uint8Array(config.ingest.maxFileBytes + 10).fill(65);
    const r = await upload("hr", [{ name: "big.txt", body: big }]);
    expect(r.status).toBe(413);
    const e = await r.json();
    expect(e.error.message).toMatch(/maxFileBytes/);
    expect(existsSync(s.server.context.uploadDir) ? readdirSync(s.server.context.uploadDir) : []).toEqual([]);
  });

  it("reports a failed ingest (unsupported content) on the job, other files unaffected", async () => {
    const r = await upload("hr", [{ name: "empty.txt", body: "" }]);
    const { jobs } = await r.json();
    await s.server.context.jobs.idle();
    const j = await (await fetch(`${s.url}/api/jobs/${jobs[0].id}`)).json();
    expect(j.status).toBe("failed");
    expect(j.error).toMatch(/empty/);
    const docs = (await (await fetch(`${s.url}/api/kbs/hr/documents`)).json()).documents;
    expect(docs).toHaveLength(2);
  });

  it("upload to an unknown knowledge base is a 404 that says how to create it", async () => {
    const r = await upload("nope", [{ name: "a.txt", body: "hello" }]);
    expect(r.status).toBe(404);
    expect((await r.json()).error.message).toMatch(/kb create nope/);
  });

  it("deletes a document and a knowledge base", async () => {
    await jsonPost(`${s.url}/api/kbs`, { name: "tmp" });
    const up = await (await upload("tmp", [{ name: "a.md", body: POLICY_EN }])).json();
    await s.server.context.jobs.idle();
    expect((await (await fetch(`${s.url}/api/jobs/${up.jobs[0].id}`)).json()).status).toBe("done");
    const d = await fetch(`${s.url}/api/kbs/tmp/documents/a.md`, { method: "DELETE" });
    expect(d.status).toBe(200);
    expect((await (await fetch(`${s.url}/api/kbs/tmp/documents`)).json()).documents).toEqual([]);
    expect((await fetch(`${s.url}/api/kbs/tmp`, { method: "DELETE" })).status).toBe(200);
    expect((await fetch(`${s.url}/api/kbs/tmp/documents`)).status).toBe(404);
  });
});

describe("bad input gets clear OpenAI-shaped errors", () => {
  const shape = (b: any) => {
    expect(Object.keys(b.error).sort()).toEqual(expect.arrayContaining(["code", "message", "param", "type"]));
    expect(typeof b.error.message).toBe("string");
  };

  it("malformed JSON → 400", async () => {
    const r = await jsonPost(`${s.url}/api/kbs/hr/search`, "{not json");
    expect(r.status).toBe(400);
    const b = await r.json();
    shape(b);
    expect(b.error.message).toMatch(/malformed JSON/);
  });

  it("wrong types → 400 naming the field (no coercion)", async () => {
    const r = await jsonPost(`${s.url}/api/kbs/hr/search`, { query: "x", topK: "5" });
    expect(r.status).toBe(400);
    const b = await r.json();
    shape(b);
    expect(b.error.param).toBe("topK");
    const r2 = await jsonPost(`${s.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: 5 }] });
    expect(r2.status).toBe(400);
    const r3 = await jsonPost(`${s.url}/api/kbs/hr/search`, { topK: 3 });
    expect((await r3.json()).error.param).toBe("query");
  });

  it("huge body → 413", async () => {
    const r = await jsonPost(`${s.url}/api/kbs/hr/search`, { query: "x".repeat(200_000) });
    expect(r.status).toBe(413);
    shape(await r.json());
  });

  it("unknown route → 404; wrong content type → 415", async () => {
    const r = await fetch(`${s.url}/api/nothing`);
    expect(r.status).toBe(404);
    shape(await r.json());
    const t = await fetch(`${s.url}/api/kbs/hr/search`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "hi",
    });
    expect(t.status).toBe(415);
  });

  it("unknown model → 404 model_not_found on /v1", async () => {
    const r = await jsonPost(`${s.url}/v1/chat/completions`, {
      model: "missing",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(r.status).toBe(404);
    const b = await r.json();
    expect(b.error.code).toBe("model_not_found");
    expect(b.error.param).toBe("model");
  });

  it("/v1/models lists every knowledge base as kb:NAME", async () => {
    const b = await (await fetch(`${s.url}/v1/models`)).json();
    expect(b.object).toBe("list");
    expect(b.data.map((m: { id: string }) => m.id)).toContain("kb:hr");
  });

  it("kb:NAME through the OpenAI SDK: extractive answer with structured citations (non-stream and stream)", async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused-locally", maxRetries: 0 });
    const q = [{ role: "user" as const, content: "How many days of annual leave do employees get?" }];
    const r = (await client.chat.completions.create({ model: "kb:hr", messages: q })) as any;
    expect(r.dajian.mode).toBe("extractive");
    expect(r.choices[0].message.content).toContain("fifteen days");
    expect(r.citations.length).toBeGreaterThan(0);
    expect(r.citations[0]).toMatchObject({ index: 1, document: "policy.md" });
    expect(r.citations[0].quote).toContain("fifteen days");
    expect(r.choices[0].message.content).toContain("[1]");
    expect(r.choices[0].message.citations).toEqual(r.citations);

    const st = await client.chat.completions.create({ model: "kb:hr", messages: q, stream: true });
    let text = "";
    let citations: any[] | undefined;
    for await (const c of st as AsyncIterable<any>) {
      if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
      if (c.citations) citations = c.citations;
    }
    expect(text).toBe(r.choices[0].message.content);
    expect(citations).toEqual(r.citations);
  });

  it("ask over SSE: deltas, then the answer with citations; stored as a conversation", async () => {
    const res = await jsonPost(`${s.url}/api/kbs/hr/ask`, { question: "公司总部在哪里？" });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const frames = [];
    for await (const f of readSse(res)) frames.push(f);
    expect(frames.some((f) => f.event === "delta")).toBe(true);
    const answer = JSON.parse(frames.at(-1)!.data);
    expect(frames.at(-1)!.event).toBe("answer");
    expect(answer.answer).toContain("上海");
    expect(answer.citations[0].document).toBe("假期.md");
    expect(answer.conversationId).toBeTruthy();

    const list = await (await fetch(`${s.url}/api/conversations?kb=hr`)).json();
    expect(list.conversations.map((c: { id: string }) => c.id)).toContain(answer.conversationId);
    const conv = await (await fetch(`${s.url}/api/conversations/${answer.conversationId}`)).json();
    expect(conv.messages.map((m: { role: string }) => m.role)).toEqual(["user", "assistant"]);
    expect(conv.messages[1].citations[0].document).toBe("假期.md");
    expect((await fetch(`${s.url}/api/conversations/${answer.conversationId}`, { method: "DELETE" })).status).toBe(200);
    expect((await fetch(`${s.url}/api/conversations/${answer.conversationId}`)).status).toBe(404);
  });

  it("ask with nothing relevant says so instead of inventing", async () => {
    const r = await jsonPost(`${s.url}/api/kbs/hr/ask`, { question: "What is the capital of Peru?", stream: false });
    const a = await r.json();
    expect(a.noAnswer).toBe(true);
    expect(a.citations).toEqual([]);
  });

  it("info says extractive mode and how to add a model", async () => {
    const b = await (await fetch(`${s.url}/api/info`)).json();
    expect(b.mode).toBe("extractive");
    expect(b.hint).toMatch(/dajian pull/);
  });

  it("the server survives all of the above", async () => {
    const health = await fetch(`${s.url}/api/health`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { sso: boolean }).sso).toBe(false); // no OIDC configured
  });
});
