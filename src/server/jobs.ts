// Ingest jobs of the server: uploaded files wait in a FIFO and are ingested one at a time (bounded CPU and memory
// however many files arrive). Progress is kept per job for polling and pushed to SSE listeners.
// Jobs survive a restart: each job's record is a small JSON file next to the uploaded bytes, replaced atomically on
// every status change. On start, jobs that were queued or running are queued again (ingest commits a document in
// one transaction and skips unchanged files, so running it again is safe); a job interrupted MAX_INTERRUPTS times
// (say, a file that crashes the process) is marked failed instead, with the fix: upload it again.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { errorLine } from "../core/errors.js";
import type { ProgressEvent } from "../core/progress.js";
import type { IngestOutcome, KbBackend } from "./services.js";

export type JobStatus = "queued" | "running" | "done" | "failed";

export interface JobView {
  id: string;
  kb: string;
  document: string;
  owner: string;
  status: JobStatus;
  progress?: ProgressEvent;
  result?: IngestOutcome;
  error?: string;
  createdAt: number;
  finishedAt?: number;
}

interface Job extends JobView {
  path: string;
  /** Runs that were cut off by a restart. */
  interrupts: number;
  listeners: Set<(j: JobView) => void>;
}

type JobRecord = Omit<Job, "listeners">;

const KEEP_FINISHED = 500; // finished jobs remembered for polling; older ones are dropped
const MAX_INTERRUPTS = 2;

export class IngestJobs {
  private jobs = new Map<string, Job>();
  private queue: Job[] = [];
  private running = false;
  private closed = false;
  private ac = new AbortController();

  private readonly dir?: string;

  /** `persist`: where uploads are saved and where job records go. Without it jobs live in memory only. */
  constructor(
    private kbs: KbBackend,
    persist?: { uploadDir: string; recordDir: string },
  ) {
    if (persist) {
      this.dir = persist.recordDir;
      this.recover(this.dir);
      if (existsSync(persist.uploadDir)) this.sweep(persist.uploadDir);
      if (this.queue.length) void this.pump();
    }
  }

  /** Remove uploaded files no queued job owns (a crash between ingest and cleanup, or mid-upload). */
  private sweep(uploadDir: string) {
    const owned = new Set(this.queue.map((j) => j.path));
    for (const e of readdirSync(uploadDir, { withFileTypes: true }))
      if (e.isFile() && !owned.has(join(uploadDir, e.name))) rmSync(join(uploadDir, e.name), { force: true });
  }

  /** Reload job records after a restart: finished ones for polling, unfinished ones queued again (or failed). */
  private recover(dir: string) {
    mkdirSync(dir, { recursive: true });
    const records: JobRecord[] = [];
    for (const f of readdirSync(dir)) {
      if (!f.endsWith(".json")) continue;
      try {
        records.push(JSON.parse(readFileSync(join(dir, f), "utf8")) as JobRecord);
      } catch {
        rmSync(join(dir, f), { force: true }); // a torn temp write never gets here (rename is atomic); junk goes
      }
    }
    records.sort((a, b) => a.createdAt - b.createdAt);
    for (const r of records) {
      const job: Job = { ...r, interrupts: r.interrupts ?? 0, listeners: new Set() };
      this.jobs.set(job.id, job);
      if (job.status === "done" || job.status === "failed") continue;
      if (job.status === "running") job.interrupts++;
      if (!existsSync(job.path)) {
        this.finishSync(job, "failed", "the uploaded file was lost when the server restarted — upload it again");
      } else if (job.interrupts >= MAX_INTERRUPTS) {
        this.finishSync(
          job,
          "failed",
          `ingest was interrupted ${job.interrupts} times by a server restart — upload the file again (if it keeps failing, check the server log)`,
        );
        rmSync(job.path, { force: true });
      } else {
        job.status = "queued";
        job.progress = undefined;
        this.save(job);
        this.queue.push(job);
      }
    }
    this.prune();
  }

  private save(j: Job) {
    if (!this.dir) return;
    const { listeners: _l, ...rec } = j;
    const file = join(this.dir, `${j.id}.json`);
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(rec));
      renameSync(`${file}.tmp`, file); // atomic: a crash leaves the old record or the new one, never half
    } catch {
      // Persistence is best effort (e.g. disk full): the job still runs and is visible while the server lives.
    }
  }

  private requeueOnDisk(j: Job) {
    j.status = "queued";
    j.progress = undefined;
    this.save(j);
  }

  private finishSync(j: Job, status: JobStatus, error?: string, result?: IngestOutcome) {
    finish(j, status, result, error);
    this.save(j);
  }

  /** Queue a file (already on disk, owned by the job: deleted after ingest). */
  add(kb: string, path: string, document: string, owner: string): JobView {
    const job: Job = {
      id: randomUUID(),
      kb,
      document,
      owner,
      path,
      status: "queued",
      createdAt: Date.now(),
      interrupts: 0,
      listeners: new Set(),
    };
    this.jobs.set(job.id, job);
    this.save(job);
    this.queue.push(job);
    void this.pump();
    return view(job);
  }

  get(id: string): JobView | undefined {
    const j = this.jobs.get(id);
    return j && view(j);
  }

  /** Subscribe to updates; returns unsubscribe. The listener is called at once with the current state. */
  watch(id: string, fn: (j: JobView) => void): () => void {
    const j = this.jobs.get(id);
    if (!j) return () => {};
    j.listeners.add(fn);
    fn(view(j));
    return () => j.listeners.delete(fn);
  }

  /** Resolves once no job is queued or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.queue.length) await new Promise((r) => setTimeout(r, 20));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ac.abort(new Error("server shutting down"));
    // Persisted: queued jobs stay queued on disk and the next start picks them up; the running one is aborted
    // (its ingest leaves nothing half-written) and runs again then. In memory only: they fail, files removed.
    for (const j of this.queue.splice(0))
      if (!this.dir) {
        finish(j, "failed", undefined, "server shut down before ingest started — upload again");
        await rm(j.path, { force: true });
      }
    await this.idle();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.closed && this.queue.length) {
        const job = this.queue.shift()!;
        job.status = "running";
        this.save(job);
        emit(job);
        let last = 0;
        const onProgress = (e: ProgressEvent) => {
          job.progress = e;
          const now = Date.now();
          if (now - last >= 100 || (e.total !== undefined && e.done >= e.total)) {
            last = now;
            emit(job);
          }
        };
        try {
          const res = await this.kbs.ingestFile(
            job.kb,
            { path: job.path, name: job.document },
            onProgress,
            this.ac.signal,
          );
          if (this.closed && this.dir && !res.ok) {
            this.requeueOnDisk(job); // cut off by shutdown, not by the file: resumed on the next start
            continue;
          }
          this.finishSync(job, res.ok ? "done" : "failed", res.ok ? undefined : res.error, res);
        } catch (err) {
          if (this.closed && this.dir) {
            this.requeueOnDisk(job);
            continue;
          }
          this.finishSync(job, "failed", errorLine(err));
        }
        // Synchronously, in the same turn as the status change: no client sees "done" while the staged upload
        // still exists.
        rmSync(job.path, { force: true });
        this.prune();
      }
    } finally {
      this.running = false;
    }
  }

  private prune() {
    const finished = [...this.jobs.values()].filter((j) => j.finishedAt !== undefined);
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.jobs.delete(j.id);
      if (this.dir) rmSync(join(this.dir, `${j.id}.json`), { force: true });
    }
  }
}

function view(j: Job): JobView {
  const { path: _p, listeners: _l, interrupts: _i, ...rest } = j;
  return { ...rest };
}

function emit(j: Job) {
  const v = view(j);
  for (const fn of j.listeners) fn(v);
}

function finish(j: Job, status: JobStatus, result?: IngestOutcome, error?: string) {
  j.status = status;
  j.result = result;
  j.error = error;
  j.finishedAt = Date.now();
  emit(j);
  j.listeners.clear();
}
