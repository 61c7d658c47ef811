// Append-only, hash-chained audit log. Each entry stores hash = sha256(prev_hash || "\n" || canonical(entry)), so
// editing or deleting any row breaks the chain from there on. Truncating the tail is caught by a head anchor
// (last seq + hash) kept in a file beside the database. Secrets are redacted before anything is written;
// prompts and answers are only kept when explicitly enabled.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { SqliteDb } from "../store/sqlite.js";

export interface AuditEvent {
  actor: string; // "user:alice", "key:key_ab12", "local", "anonymous@1.2.3.4"
  action: string; // "login", "login.failed", "deny", "key.create", "user.add", "grant", "doc.delete", ...
  target?: string;
  ok: boolean;
  detail?: Record<string, unknown>;
}

export interface AuditEntry extends Required<Omit<AuditEvent, "detail">> {
  seq: number;
  ts: number;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  /** First broken entry and why. */
  problem?: { seq: number; reason: string };
}

const GENESIS = "0".repeat(64);
const SECRET_KEY = /pass(word)?|secret|token|api[-_]?key|^key$|authorization|cookie|credential|private/i;
const SECRET_VALUE = [/\bdj_[A-Za-z0-9_-]{16,}/g, /\bBearer\s+[A-Za-z0-9._~+/=-]+/gi, /\bsk-[A-Za-z0-9_-]{12,}/g];
const CONTENT_KEY = /^(prompt|messages|answer|completion|content|question)$/i;

/** Replace secret-looking fields and values with "[redacted]" (deep, bounded). */
export function redact(value: unknown, includeContent = false, depth = 0): unknown {
  if (depth > 6) return "[truncated]";
  if (typeof value === "string") {
    let s = value.length > 2000 ? value.slice(0, 2000) + "…" : value;
    for (const re of SECRET_VALUE) s = s.replace(re, "[redacted]");
    return s;
  }
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, includeContent, depth + 1));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_KEY.test(k)) out[k] = "[redacted]";
      else if (!includeContent && CONTENT_KEY.test(k)) out[k] = "[omitted]";
      else out[k] = redact(v, includeContent, depth + 1);
    }
    return out;
  }
  return value;
}

/** Deterministic JSON: sorted keys at every level. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

function entryHash(prev: string, e: Omit<AuditEntry, "prevHash" | "hash">): string {
  const body = canonical({
    seq: e.seq,
    ts: e.ts,
    actor: e.actor,
    action: e.action,
    target: e.target,
    ok: e.ok,
    detail: e.detail,
  });
  return createHash("sha256").update(prev).update("\n").update(body).digest("hex");
}

interface Row {
  seq: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  ok: number;
  detail: string;
  prev_hash: string;
  hash: string;
}

function fromRow(r: Row): AuditEntry {
  return {
    seq: r.seq,
    ts: r.ts,
    actor: r.actor,
    action: r.action,
    target: r.target,
    ok: r.ok === 1,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

export class AuditLog {
  private readonly last;
  private readonly insert;

  /** `headFile`: where the chain head is anchored (outside the DB), e.g. <home>/audit.head. */
  constructor(
    private readonly db: SqliteDb,
    private readonly headFile?: string,
    private readonly includeContent = false,
  ) {
    this.last = db.prepare("SELECT seq, hash FROM sec_audit ORDER BY seq DESC LIMIT 1");
    this.insert = db.prepare(
      "INSERT INTO sec_audit (seq, ts, actor, action, target, ok, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
    );
  }

  append(ev: AuditEvent): AuditEntry {
    const detail = redact(ev.detail ?? {}, this.includeContent) as Record<string, unknown>;
    // IMMEDIATE: take the write lock before reading the head, so two processes cannot fork the chain.
    const entry = this.db
      .transaction(() => {
        const prev = this.last.get() as { seq: number; hash: string } | undefined;
        const base = {
          seq: (prev?.seq ?? 0) + 1,
          ts: Date.now(),
          actor: ev.actor,
          action: ev.action,
          target: ev.target ?? "",
          ok: ev.ok,
          detail,
        };
        const prevHash = prev?.hash ?? GENESIS;
        const hash = entryHash(prevHash, base);
        this.insert.run(
          base.seq,
          base.ts,
          base.actor,
          base.action,
          base.target,
          base.ok ? 1 : 0,
          JSON.stringify(detail),
          prevHash,
          hash,
        );
        return { ...base, prevHash, hash };
      })
      .immediate();
    if (this.headFile) {
      const tmp = `${this.headFile}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ seq: entry.seq, hash: entry.hash }) + "\n", { mode: 0o600 });
      renameSync(tmp, this.headFile);
    }
    return entry;
  }

  list(opts: { limit?: number; afterSeq?: number; action?: string } = {}): AuditEntry[] {
    const rows = this.db
      .prepare(`SELECT * FROM sec_audit WHERE seq > ? ${opts.action ? "AND action = ?" : ""} ORDER BY seq DESC LIMIT ?`)
      .all(
        ...[opts.afterSeq ?? 0, ...(opts.action ? [opts.action] : []), Math.min(opts.limit ?? 100, 10_000)],
      ) as Row[];
    return rows.map(fromRow).reverse();
  }

  /** Walk the whole chain: recompute each hash, check links, contiguous seq, and the external head anchor. */
  verify(): VerifyResult {
    let prev = GENESIS;
    let expectSeq = 1;
    let n = 0;
    let lastSeq = 0;
    for (const r of this.db.prepare("SELECT * FROM sec_audit ORDER BY seq").iterate() as Iterable<Row>) {
      const e = fromRow(r);
      n++;
      if (e.seq !== expectSeq)
        return { ok: false, entries: n, problem: { seq: expectSeq, reason: "entry missing (deleted)" } };
      if (e.prevHash !== prev)
        return { ok: false, entries: n, problem: { seq: e.seq, reason: "link to previous entry broken" } };
      if (entryHash(prev, e) !== e.hash)
        return { ok: false, entries: n, problem: { seq: e.seq, reason: "entry content was modified" } };
      prev = e.hash;
      expectSeq++;
      lastSeq = e.seq;
    }
    if (this.headFile && existsSync(this.headFile)) {
      const head = JSON.parse(readFileSync(this.headFile, "utf8")) as { seq: number; hash: string };
      if (head.seq > lastSeq)
        return { ok: false, entries: n, problem: { seq: head.seq, reason: "entries at the end were deleted" } };
      const at = this.db.prepare("SELECT hash FROM sec_audit WHERE seq = ?").get(head.seq) as
        { hash: string } | undefined;
      if (!at || at.hash !== head.hash)
        return { ok: false, entries: n, problem: { seq: head.seq, reason: "chain head does not match its anchor" } };
    }
    return { ok: true, entries: n };
  }
}
