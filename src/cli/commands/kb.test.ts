// The CLI contract of `kb`, `ingest`, `docs`, `search`, `eval retrieval`, run as a subprocess on a real home dir,
// plus durability: `kill -9` in the middle of an ingest leaves a consistent KB and the same command finishes it.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smallChunkConfig, writePolicies } from "../../index/fixtures.test-helper.js";
import { loadConfig } from "../../core/config.js";
import { KnowledgeBases } from "../../index/kb.js";
import { Security } from "../../security/service.js";
import { CLI, ROOT, runCli } from "../testutil.js";

let dir: string;
let home: string;
const P = () => join(dir, "policies");

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runCli(["--home", home, ...args], { env: { DAJIAN_LOG: "warn" } });
  return { code: r.code, stdout: r.out, stderr: r.err };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dj-kbcli-"));
  home = join(dir, "home");
  mkdirSync(home);
  smallChunkConfig(home);
  writePolicies(dir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dajian kb / ingest / docs / search", () => {
  it("creates, lists, ingests, searches (single and batch), evaluates, removes", async () => {
    expect((await run(["kb", "create", "hr"])).code).toBe(0);
    const dup = await run(["kb", "create", "hr"]);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/already exists — /);

    const list = JSON.parse((await run(["kb", "list", "--json"])).stdout);
    expect(list).toEqual([expect.objectContaining({ name: "hr", documents: 0, chunks: 0 })]);

    writeFileSync(join(dir, "empty.txt"), "");
    const ing = await run(["ingest", "hr", P(), join(dir, "empty.txt"), "--tag", "policy", "--json"]);
    expect(ing.code).toBe(0); // some files ingested → success even though one failed
    const summary = JSON.parse(ing.stdout);
    expect(summary.added).toBe(3);
    expect(summary.failed).toBe(1);
    expect(summary.files.find((f: { file: string }) => f.file === "empty.txt").reason).toMatch(/empty/);
    expect(ing.stderr).toMatch(/files 4\/4/); // progress on stderr

    const human = await run(["ingest", "hr", P()]);
    expect(human.stdout).toMatch(/hr: 0 added, 0 updated, 3 unchanged, 0 failed/);

    const docs = JSON.parse((await run(["docs", "hr", "--json"])).stdout);
    expect(docs.map((d: { name: string }) => d.name).sort()).toEqual([
      "policies/handbook.md",
      "policies/员工手册.md",
      "policies/員工守則.txt",
    ]);
    expect(docs[0]).toEqual(expect.objectContaining({ tags: ["policy"], status: "ready" }));

    const s = await run(["search", "hr", "年假怎么申请", "--top-k", "2", "--json"]);
    expect(s.code).toBe(0);
    const res = JSON.parse(s.stdout);
    expect(res.results).toHaveLength(2);
    expect(res.results[0]).toEqual(
      expect.objectContaining({
        text: expect.stringContaining("OA系统申请"),
        score: expect.any(Number),
        source: expect.objectContaining({ document: "policies/员工手册.md", heading: expect.stringContaining("年假") }),
      }),
    );

    const qfile = join(dir, "q.jsonl");
    writeFileSync(
      qfile,
      [
        JSON.stringify({ id: "q1", question: "加班费怎么算", answers: ["一點三四倍"], positive_ids: ["員工守則"] }),
        JSON.stringify({ question: "parental leave weeks", answers: ["sixteen weeks"], positive_ids: ["handbook"] }),
        JSON.stringify({ id: "q3", question: "婚假几天", answers: ["婚假三天"], positive_ids: ["员工手册"] }),
      ].join("\n") + "\n",
    );
    const batch = await run(["search", "hr", "--queries", qfile, "--top-k", "1", "--json"]);
    expect(batch.code).toBe(0);
    const lines = batch.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual(["q1", 2, "q3"]); // input order; line number when no id
    expect(lines[0].results[0].text).toContain("一點三四倍");
    expect(lines[1].results[0].text).toContain("sixteen weeks");
    expect(lines[2].results[0].text).toContain("婚假三天");

    const ev = await run(["eval", "retrieval", "hr", "--queries", qfile, "--top-k", "3", "--json"]);
    expect(ev.code).toBe(0);
    const report = JSON.parse(ev.stdout);
    expect(report).toEqual(
      expect.objectContaining({ queries: 3, evaluated: 3, skipped: 0, answerRecall: 1, withGold: 3, recallAtK: 1 }),
    );
    expect(report.mrr).toBe(1);
    const evHuman = await run(["eval", "retrieval", "hr", "--queries", qfile]);
    expect(evHuman.stdout).toMatch(/answer-recall/);

    const rm = await run(["docs", "rm", "hr", "policies/handbook.md"]);
    expect(rm.code).toBe(0);
    const after = JSON.parse((await run(["search", "hr", "parental leave", "--json"])).stdout);
    expect(
      after.results.every((r: { source: { document: string } }) => r.source.document !== "policies/handbook.md"),
    ).toBe(true);

    const missing = await run(["search", "nope", "x", "--json"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/knowledge base 'nope' not found — create it with `dajian kb create nope`/);

    const nothing = await run(["ingest", "hr", join(dir, "empty.txt")]);
    expect(nothing.code).toBe(1); // nothing could be ingested
    expect(nothing.stdout).toMatch(/failed {2}empty.txt: empty file/);

    // A grant on the KB must not survive its deletion (a new KB with the same name would inherit it).
    const sec = Security.open(home, { ...loadConfig(home), redisUrl: undefined });
    sec.acl.grant({ subjectKind: "user", subjectId: "u_test", kb: "hr", document: "", action: "read" });
    await sec.close();
    expect((await run(["kb", "delete", "hr"])).code).toBe(0);
    expect(JSON.parse((await run(["kb", "list", "--json"])).stdout)).toEqual([]);

    // CLI changes land in the audit hash chain, which still verifies.
    const sec2 = Security.open(home, { ...loadConfig(home), redisUrl: undefined });
    try {
      expect(sec2.acl.list({ kb: "hr" })).toEqual([]);
      const entries = sec2.audit.list({ limit: 1000 }).filter((e) => e.actor === "local");
      const seen = entries.map((e) => `${e.action} ${e.target}`);
      expect(seen).toContain("kb.create kb:hr");
      expect(seen).toContain("document.ingest hr");
      expect(seen).toContain("document.delete hr/policies/handbook.md");
      expect(seen).toContain("kb.delete kb:hr");
      expect(entries.find((e) => e.action === "document.ingest")?.detail).toMatchObject({ added: 3 });
      expect(sec2.audit.verify()).toMatchObject({ ok: true });
    } finally {
      await sec2.close();
    }
  }, 600_000);
});

describe("kill -9 in the middle of an ingest", () => {
  it("leaves the KB consistent, and the same command finishes the job", async () => {
    const many = join(dir, "many");
    mkdirSync(many);
    const N = 80;
    for (let i = 0; i < N; i++) {
      const paras = Array.from(
        { length: 40 },
        (_, j) =>
          `第${i}号制度第${j}条：员工须遵守规定${i * 100 + j}，违者按情节处理。Rule ${i}-${j} applies to all staff.`,
      );
      writeFileSync(join(many, `doc-${String(i).padStart(3, "0")}.md`), `# 制度 ${i}\n\n${paras.join("\n\n")}\n`);
    }
    expect((await run(["kb", "create", "big"])).code).toBe(0);

    const args = [...CLI, "--home", home, "ingest", "big", many];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: "ignore" });
    const db = new Database(join(home, "dajian.db"), { readonly: true, fileMustExist: true });
    const count = () => db.prepare("SELECT count(*) FROM kb_documents").pluck().get() as number;
    const deadline = Date.now() + 150_000;
    let seen = 0;
    while (Date.now() < deadline) {
      seen = count();
      if (seen >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.on("close", r));
    db.close();
    expect(seen).toBeGreaterThanOrEqual(3);

    const kbs = new KnowledgeBases(home, { embedder: null });
    try {
      const kb = await kbs.get("big");
      expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
      const done = (await kbs.documents("big")).length;
      expect(done).toBeLessThan(N); // it really was interrupted
      for (const d of await kbs.documents("big")) expect(d.chunkCount).toBeGreaterThan(0);
    } finally {
      await kbs.close();
    }

    const again = await run(["ingest", "big", many, "--json"]);
    expect(again.code).toBe(0);
    const s = JSON.parse(again.stdout);
    expect(s.unchanged + s.added + s.updated).toBe(N);
    expect(s.unchanged).toBeGreaterThanOrEqual(3);
    expect(s.failed).toBe(0);
    const kbs2 = new KnowledgeBases(home, { embedder: null });
    try {
      const kb = await kbs2.get("big");
      expect(await kbs2.store.checkConsistency(kb.id)).toEqual([]);
      expect((await kbs2.documents("big")).length).toBe(N);
      const r = await kbs2.search("big", "违者 规定4017");
      expect(r.results[0].text).toContain("规定4017");
    } finally {
      await kbs2.close();
    }
  }, 300_000);
});
