// Ingest jobs of the running server: uploaded files wait in a FIFO and are ingested one at a time (bounded CPU and
// memory however many files arrive). Progress is kept per job for polling and pushed to SSE listeners.
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
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
  listeners: Set<(j: JobView) => void>;
}

const KEEP_FINISHED = 500; // finished jobs remembered for polling; older ones are dropped

export class IngestJobs {
  private jobs = new Map<string, Job>();
  private queue: Job[] = [];
  private running = false;
  private closed = false;
  private ac = new AbortController();

  constructor(private kbs: KbBackend) {}

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
      listeners: new Set(),
    };
    this.jobs.set(job.id, job);
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
    for (const j of this.queue.splice(0)) {
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
          finish(job, res.ok ? "done" : "failed", res, res.ok ? undefined : res.error);
        } catch (err) {
          finish(job, "failed", undefined, errorLine(err));
        } finally {
          await rm(job.path, { force: true });
        }
        this.prune();
      }
    } finally {
      this.running = false;
    }
  }

  private prune() {
    const finished = [...this.jobs.values()].filter((j) => j.finishedAt !== undefined);
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.jobs.delete(j.id);
  }
}

function view(j: Job): JobView {
  const { path: _p, listeners: _l, ...rest } = j;
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
