// The models / pull / generate / ask / chat commands as users run them: a real `dajian` process per command.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConversationStore } from "../../answer/conversations.js";
import { KnowledgeBases } from "../../index/kb.js";
import { openHomeDb } from "../../store/sqlite.js";
import { writeTinyLlamaGguf } from "../../train/tiny-model.js";
import { runCli } from "../testutil.js";

let home: string;
let gguf: string;
let server: Server;
let origin: string;

const dajian = (args: string[], o: { stdin?: string; env?: NodeJS.ProcessEnv } = {}) =>
  runCli(["--home", home, ...args], {
    stdin: o.stdin ?? "",
    env: { DAJIAN_OUTBOUND_ALLOW: "127.0.0.1", ...o.env },
  });

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "dajian-cli-models-"));
  gguf = join(home, "tiny.gguf");
  writeTinyLlamaGguf(gguf, { seed: 2, contextLength: 2048 });
  const bytes = readFileSync(gguf);
  server = createServer((req, res) => {
    if (req.url === "/tiny-pulled.gguf") {
      res.writeHead(200, { "content-length": bytes.length });
      return res.end(bytes);
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const docs = join(home, "docs");
  mkdirSync(docs);
  writeFileSync(
    join(docs, "leave.md"),
    "# Leave\n\nEmployees receive 15 days of paid annual leave each year.\n\nUnused leave expires in March.\n",
  );
  // The knowledge base is set up through the library (its own CLI is tested by its owner).
  const db = openHomeDb(home);
  const kbs = new KnowledgeBases(home, { db, embedder: null });
  await kbs.create("hr");
  await kbs.ingest("hr", [join(docs, "leave.md")]);
  await kbs.close();
  db.close();
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(home, { recursive: true, force: true });
});

describe("dajian models / pull / generate / ask / chat", () => {
  it("ask with no model gives an extractive answer in the contract's JSON shape", async () => {
    const r = await dajian(["ask", "hr", "How many days of paid annual leave?", "--json"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.answer).toContain("15 days of paid annual leave");
    expect(j.citations).toEqual([
      {
        index: 1,
        document: "leave.md",
        page: null,
        heading: "Leave",
        quote: "Employees receive 15 days of paid annual leave each year.",
      },
    ]);
    expect(j.mode).toBe("extractive");
    expect(j.noAnswer).toBe(false);
    expect(j.hint).toContain("dajian pull");
  }, 120_000);

  it("models add / pull / list / test register what serve will see", async () => {
    const add = await dajian(["models", "add", "tiny", "--gguf", gguf, "--threads", "1", "--parallel", "2", "--json"]);
    expect(add.code, add.err).toBe(0);
    expect(JSON.parse(add.out)).toMatchObject({ name: "tiny", kind: "local", default: true, sequences: 2 });

    const pull = await dajian(["pull", `${origin}/tiny-pulled.gguf`, "--json"]);
    expect(pull.code, pull.err).toBe(0);
    expect(JSON.parse(pull.out)).toMatchObject({ name: "tiny-pulled", bytes: readFileSync(gguf).length });

    const db = openHomeDb(home);
    try {
      const audited = db.prepare("SELECT action, target FROM sec_audit WHERE action LIKE 'model.%' ORDER BY seq").all();
      expect(audited).toEqual([
        { action: "model.add", target: "tiny" },
        { action: "model.pull", target: "tiny-pulled" },
      ]);
    } finally {
      db.close();
    }

    const list = JSON.parse((await dajian(["models", "list", "--json"])).out);
    expect(list.models.map((m: any) => [m.name, m.default])).toEqual([
      ["tiny", true],
      ["tiny-pulled", false],
    ]);

    const test = await dajian(["models", "test", "tiny", "--json", "--max-tokens", "8"]);
    expect(test.code, test.err).toBe(0);
    const t = JSON.parse(test.out);
    expect(t).toMatchObject({ model: "tiny", chatTemplate: "ChatML" });
    expect(t.completionTokens).toBeGreaterThanOrEqual(1);
    expect(t.completionTokens).toBeLessThanOrEqual(8);
    expect(["cpu", "cuda", "vulkan", "metal"]).toContain(t.backend);
    expect(t.totalMs).toBeGreaterThan(0);
  }, 240_000);

  it("chat answers piped lines with the default model and stores the conversation; generate takes a .gguf path", async () => {
    const chat = await dajian(["chat", "hr", "--max-tokens", "8"], {
      stdin: "How many days of annual leave?\nWhen does unused leave expire?\n/exit\n",
    });
    expect(chat.code, chat.err).toBe(0);
    const db = openHomeDb(home);
    try {
      const store = new ConversationStore(db);
      const conv = store.list().find((c) => c.title === "How many days of annual leave?");
      expect(conv).toMatchObject({ kb: "hr", model: "tiny", principalId: "local" });
      const msgs = store.messages(conv!.id);
      expect(msgs.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
      expect(msgs[1].mode).toBe("generative");
      expect(chat.out).toContain(msgs[1].content);
    } finally {
      db.close();
    }

    const g = await dajian(["generate", gguf, "hello", "--max-tokens", "6", "--threads", "1", "--json"]);
    expect(g.code, g.err).toBe(0);
    const r = JSON.parse(g.out);
    expect(r.usage.completionTokens).toBeLessThanOrEqual(6);
    expect(typeof r.text).toBe("string");
    const bad = await dajian(["generate", "no-such-model", "hi"]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^dajian: no model named "no-such-model" — .*models list/);
  }, 240_000);
});
