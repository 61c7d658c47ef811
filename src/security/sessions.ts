// Web login: sessions are random 256-bit tokens stored only as SHA-256; each carries a CSRF token for the
// double-submit check. Failed logins are throttled per client address (in memory) and lock the account after
// repeated failures (in the DB, so the lock survives restarts and holds across processes sharing the home).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { DajianError } from "../core/errors.js";
import type { SqliteDb } from "../store/sqlite.js";
import { burnPasswordCheck, verifyPassword } from "./password.js";

export interface LoginPolicy {
  sessionTtlMs: number;
  /** Failed attempts before the account locks. */
  maxFailures: number;
  lockMs: number;
  /** Attempts per address per window (successful or not). */
  perAddressAttempts: number;
  perAddressWindowMs: number;
}

export const DEFAULT_LOGIN_POLICY: LoginPolicy = {
  sessionTtlMs: 12 * 3600e3,
  maxFailures: 5,
  lockMs: 15 * 60e3,
  perAddressAttempts: 20,
  perAddressWindowMs: 5 * 60e3,
};

export interface Session {
  token: string;
  csrf: string;
  userId: string;
  expiresAt: number;
}

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  private readonly attempts = new Map<string, number[]>();
  private readonly lookup;

  constructor(
    private readonly db: SqliteDb,
    readonly policy: LoginPolicy = DEFAULT_LOGIN_POLICY,
  ) {
    this.lookup = db.prepare(
      "SELECT s.user_id, s.csrf, s.expires_at FROM sec_sessions s JOIN sec_users u ON u.id = s.user_id WHERE s.id_hash = ? AND u.disabled = 0",
    );
  }

  private throttle(addr: string, now: number): void {
    const w = (this.attempts.get(addr) ?? []).filter((t) => t > now - this.policy.perAddressWindowMs);
    if (w.length >= this.policy.perAddressAttempts) {
      const retry = Math.ceil((w[0] + this.policy.perAddressWindowMs - now) / 1000);
      throw new DajianError(
        "rate_limited",
        "too many login attempts from this address",
        `wait ${retry} s and try again`,
        { retryAfter: retry },
      );
    }
    w.push(now);
    this.attempts.set(addr, w);
    if (this.attempts.size > 100_000) this.attempts.clear(); // bound memory under a spray of addresses
  }

  /** Check a password and open a session. Failure messages never say whether the user exists. */
  async login(name: string, password: string, addr: string, now = Date.now()): Promise<Session> {
    this.throttle(addr, now);
    const u = this.db
      .prepare("SELECT id, password_hash, disabled, failed_logins, locked_until FROM sec_users WHERE name = ?")
      .get(name) as
      | {
          id: string;
          password_hash: string | null;
          disabled: number;
          failed_logins: number;
          locked_until: number | null;
        }
      | undefined;
    const bad = new DajianError(
      "unauthorized",
      "wrong user name or password",
      "check both; accounts lock after repeated failures",
    );
    if (!u || !u.password_hash || u.disabled) {
      await burnPasswordCheck(password);
      throw bad;
    }
    if (u.locked_until && u.locked_until > now) {
      const retry = Math.ceil((u.locked_until - now) / 1000);
      throw new DajianError(
        "rate_limited",
        "account temporarily locked after failed logins",
        `wait ${retry} s, or an admin can reset the password`,
        { retryAfter: retry },
      );
    }
    if (!(await verifyPassword(password, u.password_hash))) {
      const fails = u.failed_logins + 1;
      const lock = fails >= this.policy.maxFailures ? now + this.policy.lockMs : null;
      this.db
        .prepare("UPDATE sec_users SET failed_logins = ?, locked_until = ? WHERE id = ?")
        .run(lock ? 0 : fails, lock, u.id);
      throw bad;
    }
    this.db.prepare("UPDATE sec_users SET failed_logins = 0, locked_until = NULL WHERE id = ?").run(u.id);
    return this.create(u.id, now);
  }

  create(userId: string, now = Date.now()): Session {
    const token = randomBytes(32).toString("base64url");
    const csrf = randomBytes(24).toString("base64url");
    const expiresAt = now + this.policy.sessionTtlMs;
    this.db.prepare("DELETE FROM sec_sessions WHERE expires_at <= ?").run(now);
    this.db
      .prepare("INSERT INTO sec_sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?,?,?,?,?)")
      .run(sha(token), userId, csrf, now, expiresAt);
    return { token, csrf, userId, expiresAt };
  }

  get(token: string, now = Date.now()): Session | null {
    if (!token || token.length > 100) return null;
    const r = this.lookup.get(sha(token)) as { user_id: string; csrf: string; expires_at: number } | undefined;
    if (!r || r.expires_at <= now) return null;
    return { token, csrf: r.csrf, userId: r.user_id, expiresAt: r.expires_at };
  }

  logout(token: string): void {
    this.db.prepare("DELETE FROM sec_sessions WHERE id_hash = ?").run(sha(token));
  }
}
