// `dajian data …` as users run it (subprocess on a real home dir): JSON reports, the HTML stats report, KB input,
// and one-line errors that name the fix.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writePolicies } from "../../index/fixtures.test-helper.js";
import { KnowledgeBases } from "../../index/kb.js";
import { CLI, ROOT } from "../testutil.js";

let dir: string;
let home: string;

function dajian(...args: string[]) {
  const r = spawnSync(process.execPath, [...CLI, ...args, "--home", home], {
    encoding: "utf8",
    cwd: ROOT,
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dajian-data-cli-"));
  home = join(dir, "home");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dajian data", () => {
  it("clean --pii --json, then stats --json --html on the result", () => {
    const inp = join(dir, "in.jsonl");
    writeFileSync(
      inp,
      [
        { text: "请拨打 13912345678 联系人事部，邮箱 hr@acme.example。" },
        { text: "Annual leave is fifteen days for every employee after one year." },
        { text: "!!!! ???? #### $$$$" },
      ]
        .map((o) => JSON.stringify(o))
        .join("\n"),
    );
    const out = join(dir, "clean.jsonl");
    const c = dajian("data", "clean", inp, "--out", out, "--pii", "--json");
    expect(c.code, c.stderr).toBe(0);
    const rep = JSON.parse(c.stdout.trim().split("\n").pop()!) as {
      kept: number;
      dropped: { symbols: number };
      pii: { phone: number };
    };
    expect(rep).toMatchObject({ kept: 2, dropped: { symbols: 1 }, pii: { phone: 1 } });
    expect(readFileSync(out, "utf8")).toContain("<PHONE>");

    const html = join(dir, "stats.html");
    const s = dajian("data", "stats", out, "--json", "--html", html);
    expect(s.code, s.stderr).toBe(0);
    const st = JSON.parse(s.stdout.trim().split("\n").pop()!) as {
      documents: number;
      languages: Record<string, number>;
    };
    expect(st.documents).toBe(2);
    expect(st.languages).toMatchObject({ zh: 1, en: 1 });
    expect(readFileSync(html, "utf8")).toContain("Corpus statistics");
  }, 120_000);

  it("builds Q&A pairs from a knowledge base with from-kb", async () => {
    const kbs = new KnowledgeBases(home, { embedder: null });
    try {
      await kbs.create("acme");
      expect((await kbs.ingest("acme", [writePolicies(dir)])).failed).toBe(0);
    } finally {
      await kbs.close();
    }
    const q = dajian("data", "from-kb", "acme", "--out", join(dir, "qa.jsonl"), "--templates", "--json");
    expect(q.code, q.stderr).toBe(0);
    const r = JSON.parse(q.stdout.trim().split("\n").pop()!) as { pairs: number; reviewHtml: string; model: null };
    expect(r.pairs).toBeGreaterThanOrEqual(8);
    expect(r.model).toBeNull();
    expect(existsSync(r.reviewHtml)).toBe(true);
  }, 180_000);

  it("bad input: one line on stderr naming the fix, exit code 1, no output file", () => {
    const out = join(dir, "never.txt");
    const a = dajian("data", "clean", join(dir, "missing.txt"), "--out", out);
    expect(a.code).toBe(1);
    expect(
      a.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("dajian:")),
    ).toEqual([expect.stringMatching(/input file not found: .*missing\.txt — check the path/)]);
    const b = dajian("data", "dedup", join(dir, "in.jsonl"), "--out", out, "--threshold", "2");
    expect(b.code).toBe(1);
    expect(b.stderr.trim().split("\n")[0]).toMatch(
      /--threshold must be a number ≥ 0\.01 ≤ 1, got '2' — pass e\.g\. --threshold 0\.8$/,
    );
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});
