// API keys: 256-bit random secrets shown once, stored only as SHA-256 (a fast hash is right for high-entropy keys;
// lookup is by hash, so timing reveals nothing about stored keys; the final compare is constant-time).
import * as nodeCrypto from "node:crypto";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { DajianError } from "../core/errors.js";
import type { SqliteDb } from "../store/sqlite.js";
import { checkName, checkRole, newId } from "./ids.js";
import type { KeyScope, Limits, Role } from "./types.js";

export const KEY_PREFIX = "dj_";

export interface KeyInfo {
  id: string;
  name: string;
  role: Role;
  /** First characters of the key, to recognise it in listings. */
  prefix: string;
  userId: string | null;
  scope: KeyScope;
  limits: Limits;
  expiresAt: string | null;
  revokedAt: string | null;
  createdBy: string;
  createdAt: string;
  lastUsedAt: string | null;
}

export interface CreatedKey extends KeyInfo {
  /** The secret. Shown once; not recoverable. */
  key: string;
}

export interface KeyRow {
  id: string;
  name: string;
  hash: string;
  prefix: string;
  role: Role;
  user_id: string | null;
  scope: string;
  limits: string;
  expires_at: number | null;
  revoked_at: number | null;
  created_by: string;
  created_at: number;
  last_used_at: number | null;
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export function keyInfo(r: KeyRow): KeyInfo {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    prefix: r.prefix,
    userId: r.user_id,
    scope: JSON.parse(r.scope) as KeyScope,
    limits: JSON.parse(r.limits) as Limits,
    expiresAt: iso(r.expires_at),
    revokedAt: iso(r.revoked_at),
    createdBy: r.created_by,
    createdAt: iso(r.created_at)!,
    lastUsedAt: iso(r.last_used_at),
  };
}

// crypto.hash (Node ≥ 20.12) is the one-shot form: no Hash object per request. Looked up, not imported by name, so
// older Node 20 releases still load this module.
const oneShotHash = (nodeCrypto as { hash?: (alg: string, data: string, enc: "hex") => string }).hash;

export function hashKey(key: string): string {
  return oneShotHash ? oneShotHash("sha256", key, "hex") : createHash("sha256").update(key).digest("hex");
}

/** "30d", "12h", "90m", "1y" or an ISO date → epoch ms. */
export function parseExpires(v: string, now = Date.now()): number {
  const m = /^(\d+)\s*([mhdwy])$/.exec(v.trim());
  if (m) {
    const unit = { m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3, y: 365 * 86400e3 }[m[2] as "m"];
    return now + Number(m[1]) * unit;
  }
  const t = Date.parse(v);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(v.trim()))
    throw new DajianError(
      "invalid_input",
      `cannot read expiry ${JSON.stringify(v)}`,
      "use a duration like 30d, 12h, 1y or an ISO date like 2027-01-31",
    );
  if (t <= now)
    throw new DajianError("invalid_input", `expiry ${v} is in the past`, "give a future date or a duration like 30d");
  return t;
}

const LIMIT_KEYS: (keyof Limits)[] = ["rpm", "tpm", "maxConcurrent", "dailyTokens", "monthlyTokens"];

export function checkLimits(l: Limits): Limits {
  const out: Limits = {};
  for (const k of LIMIT_KEYS) {
    const v = l[k];
    if (v === undefined || v === null) continue;
    if (!Number.isInteger(v) || v < 0 || v > 1e12)
      throw new DajianError(
        "invalid_input",
        `limit ${k}=${String(v)} is not a whole number ≥ 0`,
        `give --${k} a number like 60`,
      );
    out[k] = v;
  }
  return out;
}

export interface NewKey {
  name: string;
  role: string;
  userId?: string;
  scope?: KeyScope;
  limits?: Limits;
  expiresAt?: number;
  createdBy: string;
}

export class Keys {
  private readonly byHash;
  private readonly touch;
  /** Key id → when it was last used, not yet written. */
  private readonly used = new Map<string, number>();

  constructor(private readonly db: SqliteDb) {
    this.byHash = db.prepare("SELECT * FROM sec_keys WHERE hash = ?");
    this.touch = db.prepare(
      "UPDATE sec_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
    );
  }

  create(k: NewKey): CreatedKey {
    checkName("key", k.name);
    const role = checkRole(k.role);
    const scope: KeyScope = {};
    for (const axis of ["kbs", "models", "routes"] as const) {
      const v = k.scope?.[axis];
      if (v !== undefined) scope[axis] = [...new Set(v)];
    }
    const limits = checkLimits(k.limits ?? {});
    const key = KEY_PREFIX + randomBytes(32).toString("base64url");
    const id = newId("key");
    const now = Date.now();
    this.db
      .prepare(
        `INSERT INTO sec_keys (id, name, hash, prefix, role, user_id, scope, limits, expires_at, created_by, created_at)
         VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
      )
      .run(
        id,
        k.name,
        hashKey(key),
        key.slice(0, 9),
        role,
        k.userId ?? null,
        JSON.stringify(scope),
        JSON.stringify(limits),
        k.expiresAt ?? null,
        k.createdBy,
        now,
      );
    return { ...this.get(id), key };
  }

  get(id: string): KeyInfo {
    const r = this.db.prepare("SELECT * FROM sec_keys WHERE id = ?").get(id) as KeyRow | undefined;
    if (!r) throw new DajianError("not_found", `no key ${id}`, "see `dajian keys list`");
    return keyInfo(r);
  }

  list(opts: { userId?: string; includeRevoked?: boolean } = {}): KeyInfo[] {
    const rows = (
      opts.userId
        ? this.db.prepare("SELECT * FROM sec_keys WHERE user_id = ? ORDER BY created_at").all(opts.userId)
        : this.db.prepare("SELECT * FROM sec_keys ORDER BY created_at").all()
    ) as KeyRow[];
    return rows.filter((r) => opts.includeRevoked !== false || r.revoked_at === null).map(keyInfo);
  }

  revoke(id: string): KeyInfo {
    const r = this.db
      .prepare("UPDATE sec_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
      .run(Date.now(), id);
    if (r.changes === 0) this.get(id); // throws not_found for unknown ids; already-revoked is idempotent
    return this.get(id);
  }

  setLimits(id: string, limits: Limits): void {
    this.get(id);
    this.db.prepare("UPDATE sec_keys SET limits = ? WHERE id = ?").run(JSON.stringify(checkLimits(limits)), id);
  }

  /** The live key row for a presented secret, or null (unknown, revoked, expired). */
  verify(presented: string, now = Date.now()): KeyRow | null {
    if (!presented.startsWith(KEY_PREFIX) || presented.length > 200) return null;
    const h = hashKey(presented);
    const r = this.byHash.get(h) as KeyRow | undefined;
    if (!r) return null;
    if (!timingSafeEqual(Buffer.from(r.hash, "hex"), Buffer.from(h, "hex"))) return null;
    if (r.revoked_at !== null || (r.expires_at !== null && r.expires_at <= now)) return null;
    this.noteUse(r.id, now);
    return r;
  }

  /**
   * Remember that a key was used. last_used_at is advisory, so it is written later, in one transaction for all
   * keys (`flushUse`, about once a minute): a request never waits on a write.
   */
  noteUse(id: string, now = Date.now()): void {
    this.used.set(id, now);
  }

  flushUse(): void {
    if (this.used.size === 0) return;
    const batch = [...this.used];
    this.used.clear();
    this.db.transaction(() => {
      for (const [id, t] of batch) this.touch.run(t, id, t);
    })();
  }
}
