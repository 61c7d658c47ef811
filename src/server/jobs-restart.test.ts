// Ingest jobs survive a restart: a real `dajian serve` process is killed with SIGKILL while an upload is being
// ingested and others wait; the next start resumes them, and every document ends up indexed exactly once.
// Also: a job cut off too often, or whose file vanished, is marked failed with the fix (upload again).
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../core/config.js";
import { openServices } from "./adapters.js";
import { IngestJobs, type JobView } from "./jobs.js";
import { spawnServe } from "./testutil.js";

const homes: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

function tempHome(): string {
  const h = mkdtempSync(join(tmpdir(), "dj-jobs-"));
  homes.push(h);
  return h;
}

async function serve(home: string) {
  const r = await spawnServe(home);
  children.push(r.child);
  return r;
}

const job = async (url: string, id: string): Promise<JobView> => (await fetch(`${url}/api/jobs/${id}`)).json();

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 40_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A markdown handbook of about `kb` KiB: big enough that its ingest is still running when we kill the server. */
function handbook(title: string, kib: number): string {
  const lines = [`# ${title}`];
  for (let i = 0, n = 0; n < kib * 1024; i++) {
    const l =
      `\n## Section ${i}\n\nRule ${i}: employees record ${title} item ${i} within ${i % 30} days; ` +
      `the office keeps copy ${i} for audit and travel claims number ${i * 7}.`;
    lines.push(l);
    n += l.length + 1;
  }
  return lines.join("\n");
}

describe("ingest jobs across a restart", () => {
  it("resumes the running and queued jobs after kill -9; each document is indexed once", async () => {
    const home = tempHome();
    let { url, child } = await serve(home);
    expect(
      (
        await fetch(`${url}/api/kbs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: '{"name":"hr"}',
        })
      ).status,
    ).toBe(201);
    const fd = new FormData();
    fd.append("file", new Blob([handbook("leave", 500)]), "leave.md");
    fd.append("file", new Blob([handbook("travel", 40)]), "travel.md");
    fd.append("file", new Blob([handbook("office", 40)]), "office.md");
    const up = await fetch(`${url}/api/kbs/hr/documents`, { method: "POST", body: fd });
    expect(up.status).toBe(202);
    const ids = ((await up.json()) as { jobs: JobView[] }).jobs.map((j) => j.id);
    expect(ids).toHaveLength(3);

    // Kill the moment the first job is ingesting: jobs run one at a time, so the others are still queued.
    await until("first job running", async () => ((await job(url, ids[0])).status === "running" ? true : undefined));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const recDir = join(home, "tmp", "ingest-jobs");
    const onDisk = (id: string) => JSON.parse(readFileSync(join(recDir, `${id}.json`), "utf8")) as JobView;
    expect(["running", "done"]).toContain(onDisk(ids[0]).status);
    expect(onDisk(ids[1]).status).toBe("queued");
    expect(onDisk(ids[2]).status).toBe("queued");

    ({ url, child } = await serve(home));
    const finished = await until("all jobs finished", async () => {
      const js = await Promise.all(ids.map((id) => job(url, id)));
      return js.every((j) => j.status === "done" || j.status === "failed") ? js : undefined;
    });
    expect(finished.map((j) => [j.document, j.status, j.error])).toEqual([
      ["leave.md", "done", undefined],
      ["travel.md", "done", undefined],
      ["office.md", "done", undefined],
    ]);
    const docs = ((await (await fetch(`${url}/api/kbs/hr/documents`)).json()) as { documents: { name: string }[] })
      .documents;
    expect(docs.map((d) => d.name).sort()).toEqual(["leave.md", "office.md", "travel.md"]);
    // Nothing left in the upload staging dir once the resumed jobs are done.
    expect(readdirSync(join(home, "tmp", "uploads"))).toEqual([]);
    const hits = await fetch(`${url}/api/kbs/hr/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "travel claims", topK: 3 }),
    });
    expect(((await hits.json()) as { results: unknown[] }).results.length).toBeGreaterThan(0);
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }, 120_000);

  it("fails a job interrupted twice or whose upload is gone, with the fix; sweeps orphan uploads", async () => {
    const home = tempHome();
    const uploadDir = join(home, "tmp", "uploads");
    const recordDir = join(home, "tmp", "ingest-jobs");
    mkdirSync(uploadDir, { recursive: true });
    mkdirSync(recordDir, { recursive: true });
    const rec = (id: string, path: string, status: string, interrupts: number) =>
      writeFileSync(
        join(recordDir, `${id}.json`),
        JSON.stringify({ id, kb: "hr", document: `${id}.md`, owner: "local", path, status, interrupts, createdAt: 1 }),
      );
    const crashy = join(uploadDir, "crashy.md");
    writeFileSync(crashy, "# crashy\n\nthis file took the server down once already\n");
    rec("crashy", crashy, "running", 1);
    rec("lost", join(uploadDir, "gone.md"), "queued", 0);
    writeFileSync(join(uploadDir, "orphan.md"), "left by a crash mid-upload");
    writeFileSync(join(recordDir, "torn.json"), "{not json");

    const services = await openServices(home, DEFAULT_CONFIG);
    const jobs = new IngestJobs(services.kbs, { uploadDir, recordDir });
    try {
      expect(jobs.get("crashy")).toMatchObject({
        status: "failed",
        error: expect.stringMatching(/interrupted 2 times.*upload the file again/),
      });
      expect(jobs.get("lost")).toMatchObject({
        status: "failed",
        error: expect.stringMatching(/lost.*upload it again/),
      });
      expect(readdirSync(uploadDir)).toEqual([]); // the crashy file, the orphan: gone
      expect(existsSync(join(recordDir, "torn.json"))).toBe(false);
      // The failed state is what the next start sees too.
      expect(JSON.parse(readFileSync(join(recordDir, "crashy.json"), "utf8")).status).toBe("failed");
    } finally {
      await jobs.close();
      await services.close();
    }
  });
});
