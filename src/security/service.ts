// The security facade: one object per home dir that authenticates callers, answers permission questions, applies
// limits and budgets, and performs audited administrative changes (with escalation checks) for the CLI and the API.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Redis as RedisCtor } from "ioredis";
import type { DajianConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { log } from "../core/log.js";
import { openHomeDb, type SqliteDb } from "../store/sqlite.js";
import { Acl, principalKey, type DocumentResolver, type Grant, type SubjectKind } from "./acl.js";
import { Lru } from "./lru.js";
import { AuditLog, type AuditEvent } from "./audit.js";
import { ROLE_RANK, checkRole } from "./ids.js";
import {
  KEY_PREFIX,
  Keys,
  checkLimits,
  hashKey,
  parseExpires,
  type CreatedKey,
  type KeyInfo,
  type KeyRow,
} from "./keys.js";
import { MemoryLimitStore, RedisLimitStore, type LimitCheck, type LimitStore } from "./limits.js";
import { DEFAULT_LOGIN_POLICY, Sessions, type LoginPolicy, type Session } from "./sessions.js";
import { Users, type User } from "./users.js";
import {
  KB_ACTIONS,
  LOCAL_PRINCIPAL,
  type AuthedPrincipal,
  type KbAction,
  type KeyScope,
  type Limits,
  type Principal,
  type Role,
} from "./types.js";

/** Security settings read from config key `security` (all optional). */
export interface SecurityConfig {
  /** Record prompts/answers in the audit log (off by default). */
  auditPrompts?: boolean;
  login?: Partial<LoginPolicy>;
  /** Hard caps applied to every model call. */
  maxTokensCap?: number;
  maxPromptTokens?: number;
  /** Concurrent streaming responses per principal (on top of per-subject maxConcurrent). */
  maxConcurrentStreams?: number;
  /** Lease lifetime for concurrency slots of crashed processes. */
  leaseTtlMs?: number;
  /** Limits applied to every key/user without their own (e.g. {"rpm": 600}). */
  defaultLimits?: Limits;
}

export function securityConfig(config: DajianConfig): SecurityConfig {
  return (config.security ?? {}) as SecurityConfig;
}

export interface OpenSecurityOptions {
  db?: SqliteDb;
  resolveDocument?: DocumentResolver;
  limitStore?: LimitStore;
}

export interface UsageLease {
  /** Settle with real usage; call exactly once (extra calls are ignored). */
  settle(usage: { promptTokens: number; completionTokens: number }): Promise<void>;
  readonly reserved: number;
}

/** Limits of every subject a principal counts against (key, user, groups), and its requests-per-minute checks. */
interface SubjectLimits {
  subjects: { subject: string; limits: Limits }[];
  rpm: LimitCheck[];
}

const ROLE_NAME = (p: Principal) => (p.kind === "local" ? "local" : `${p.kind}:${p.name}`);

function startOfNextUtcDay(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}
function startOfNextUtcMonth(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export class Security {
  readonly users: Users;
  readonly acl: Acl;
  readonly keys: Keys;
  readonly sessions: Sessions;
  readonly audit: AuditLog;
  readonly limits: LimitStore;
  readonly settings: SecurityConfig;
  private readonly ownsDb: boolean;
  private readonly limitRows;
  private readonly dataVersionStmt;
  private readonly totalChangesStmt;
  /** data_version as last read, and whether that read belongs to the current event-loop turn. */
  private dataVersion = -1;
  private dataVersionFresh = false;
  private cacheVersion = "";
  private readonly useTimer: NodeJS.Timeout;
  /** Verified keys by their SHA-256 (never by the secret itself); bounded LRU, flushed on any DB change. */
  private readonly keyCache = new Lru<string, { p: AuthedPrincipal; expiresAt: number | null; touched: number }>(
    10_000,
  );
  private readonly limitCache = new Lru<string, SubjectLimits>(10_000);

  constructor(
    readonly home: string,
    readonly config: DajianConfig,
    readonly db: SqliteDb,
    opts: OpenSecurityOptions = {},
  ) {
    this.ownsDb = !opts.db;
    this.settings = securityConfig(config);
    this.dataVersionStmt = db.prepare("PRAGMA data_version").pluck();
    this.totalChangesStmt = db.prepare("SELECT total_changes()").pluck();
    this.users = new Users(db);
    this.acl = new Acl(db, opts.resolveDocument, () => this.version());
    this.keys = new Keys(db);
    this.sessions = new Sessions(db, { ...DEFAULT_LOGIN_POLICY, ...this.settings.login });
    this.audit = new AuditLog(db, join(home, "audit.head"), this.settings.auditPrompts === true);
    this.limits = opts.limitStore ?? (config.redisUrl ? redisStore(config.redisUrl) : new MemoryLimitStore());
    this.useTimer = setInterval(() => this.flushKeyUse(), 60_000).unref();
    this.limitRows = db.prepare(
      "SELECT subject_kind, subject_id, limits FROM sec_limits WHERE subject_kind = ? AND subject_id = ?",
    );
  }

  static open(home: string, config: DajianConfig, opts: OpenSecurityOptions = {}): Security {
    return new Security(home, config, opts.db ?? openHomeDb(home), opts);
  }

  /** Write pending last-used times now (the timer does it about once a minute; close() does it at the end). */
  flushKeyUse(): void {
    try {
      this.keys.flushUse();
    } catch (err) {
      log.warn("could not record key last-used times", { err: String(err) }); // advisory: never fail a request
    }
  }

  async close(): Promise<void> {
    clearInterval(this.useTimer);
    this.flushKeyUse();
    await this.limits.close();
    if (this.ownsDb) this.db.close();
  }

  /**
   * A token that changes whenever the database may have changed: data_version moves when another connection (the
   * CLI, another server process, the KB store) commits; total_changes when this one writes. Caches keyed on it
   * make revocations and grant changes apply on the very next request without re-reading everything per request.
   * total_changes is read on every call (it costs nothing: no file access); data_version needs a read lock on the
   * WAL (~8 µs), so it is read once per event-loop turn, and afresh by `refresh()` at the start of every
   * authenticated request — a commit made before a request arrives is always seen by that request.
   */
  version(): string {
    if (!this.dataVersionFresh) this.readDataVersion();
    return `${this.dataVersion}:${this.totalChangesStmt.get() as number}`;
  }

  /** Re-read data_version now (start of a request: another process may have just revoked a key). */
  refresh(): void {
    this.readDataVersion();
  }

  private readDataVersion(): void {
    this.dataVersion = this.dataVersionStmt.get() as number;
    if (!this.dataVersionFresh) {
      this.dataVersionFresh = true;
      setImmediate(() => (this.dataVersionFresh = false)).unref();
    }
  }

  private freshCaches(): void {
    const v = this.version();
    if (v !== this.cacheVersion) {
      this.cacheVersion = v;
      this.keyCache.clear();
      this.limitCache.clear();
    }
  }

  // ------------------------------------------------------------ authentication

  /** Principal for a presented API key, or null when unknown/revoked/expired (or its user is disabled). */
  principalForKey(presented: string): AuthedPrincipal | null {
    if (!presented.startsWith(KEY_PREFIX) || presented.length > 200) return null;
    this.refresh();
    this.freshCaches();
    const h = hashKey(presented);
    const now = Date.now();
    const c = this.keyCache.get(h);
    if (c && (c.expiresAt === null || c.expiresAt > now)) {
      if (now - c.touched >= 60_000) {
        c.touched = now;
        this.keys.noteUse(c.p.id, now);
      }
      return c.p;
    }
    const r = this.keys.verify(presented, now);
    const p = r ? this.keyPrincipal(r) : null;
    if (r && p) this.keyCache.set(h, { p, expiresAt: r.expires_at, touched: now });
    return p;
  }

  private keyPrincipal(r: KeyRow): AuthedPrincipal | null {
    let role = r.role;
    let groups: string[] = [];
    if (r.user_id) {
      const u = this.users.row(r.user_id);
      if (!u || u.disabled) return null;
      // A key never outranks its user, even after the user is demoted.
      if (ROLE_RANK[u.role] < ROLE_RANK[role]) role = u.role;
      groups = this.users.groupsOf(u.id);
    }
    return {
      kind: "key",
      id: r.id,
      name: r.name,
      role,
      groups,
      userId: r.user_id ?? undefined,
      scope: JSON.parse(r.scope) as KeyScope,
      limits: JSON.parse(r.limits) as Limits,
    };
  }

  principalForUser(userId: string, session?: Session): AuthedPrincipal | null {
    const u = this.users.row(userId);
    if (!u || u.disabled) return null;
    return {
      kind: "user",
      id: u.id,
      name: u.name,
      role: u.role,
      groups: this.users.groupsOf(u.id),
      session: session ? { csrf: session.csrf } : undefined,
    };
  }

  principalForSession(token: string): AuthedPrincipal | null {
    this.refresh();
    const s = this.sessions.get(token);
    return s ? this.principalForUser(s.userId, s) : null;
  }

  async login(name: string, password: string, addr: string): Promise<{ session: Session; user: User }> {
    try {
      const session = await this.sessions.login(name, password, addr);
      this.audit.append({ actor: `user:${name}`, action: "login", ok: true, detail: { addr } });
      return { session, user: this.users.get(session.userId) };
    } catch (err) {
      this.audit.append({
        actor: `anonymous@${addr}`,
        action: "login.failed",
        target: `user:${name}`,
        ok: false,
        detail: { reason: (err as Error).message },
      });
      throw err;
    }
  }

  logout(p: Principal, token: string): void {
    this.sessions.logout(token);
    this.audit.append({ actor: ROLE_NAME(p), action: "logout", ok: true });
  }

  // ------------------------------------------------------------ limits and budgets

  private subjectLimits(p: Principal): SubjectLimits {
    this.freshCaches();
    const ck = principalKey(p);
    let v = this.limitCache.get(ck);
    if (!v) {
      const subjects = this.computeSubjectLimits(p);
      // The per-request rate checks never change while the limits do not: build them once (reserve never mutates them).
      const rpm: LimitCheck[] = [];
      for (const s of subjects)
        if (s.limits.rpm !== undefined)
          rpm.push({ kind: "rate", key: `rpm:${s.subject}`, limit: s.limits.rpm, cost: 1, windowMs: 60_000 });
      this.limitCache.set(ck, (v = { subjects, rpm }));
    }
    return v;
  }

  private computeSubjectLimits(p: Principal): { subject: string; limits: Limits }[] {
    const a = p as AuthedPrincipal;
    const out: { subject: string; limits: Limits }[] = [];
    const dflt = this.settings.defaultLimits ?? {};
    if (p.kind === "key") out.push({ subject: `key:${p.id}`, limits: { ...dflt, ...a.limits } });
    const userId = p.kind === "user" ? p.id : a.userId;
    if (userId) {
      const r = this.limitRows.get("user", userId) as { limits: string } | undefined;
      out.push({
        subject: `user:${userId}`,
        limits: r ? (JSON.parse(r.limits) as Limits) : p.kind === "user" ? dflt : {},
      });
    }
    for (const g of p.groups) {
      const r = this.limitRows.get("group", g) as { limits: string } | undefined;
      if (r) out.push({ subject: `group:${g}`, limits: JSON.parse(r.limits) as Limits });
    }
    return out;
  }

  setLimits(actor: Principal, subject: { kind: "user" | "group" | "key"; name: string }, limits: Limits): void {
    this.requireAdmin(actor);
    const l = checkLimits(limits);
    if (subject.kind === "key") this.keys.setLimits(subject.name, l);
    else {
      const id = subject.kind === "user" ? this.users.require(subject.name).id : subject.name;
      if (subject.kind === "group" && !this.users.listGroups().some((g) => g.name === id))
        throw new DajianError("not_found", `no group ${subject.name}`, "see `dajian groups list`");
      this.db
        .prepare(
          "INSERT INTO sec_limits (subject_kind, subject_id, limits) VALUES (?,?,?) ON CONFLICT DO UPDATE SET limits = excluded.limits",
        )
        .run(subject.kind, id, JSON.stringify(l));
    }
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: "limits.set",
      target: `${subject.kind}:${subject.name}`,
      ok: true,
      detail: { ...l },
    });
  }

  private reject(r: { retryAfterMs: number; failed: LimitCheck }, what: string): never {
    const retry = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
    throw new DajianError(
      "rate_limited",
      `${what} exceeded (${r.failed.key.split(":").slice(0, 3).join(":")})`,
      `retry after ${retry} s, or ask an admin to raise the limit`,
      { retryAfter: retry },
    );
  }

  /** Count one request against requests-per-minute limits; throws rate_limited (429 + Retry-After). */
  async checkRequest(p: Principal): Promise<void> {
    if (p.kind === "local" || p.kind === "anonymous") return;
    const checks = this.subjectLimits(p).rpm;
    if (checks.length === 0) return;
    const r = await this.limits.reserve(checks, "");
    if (!r.ok) this.reject(r, "request rate limit");
  }

  /** Reserve tokens-per-minute, concurrency and day/month budgets for one model call (prompt + max_tokens). */
  async admit(p: Principal, req: { promptTokens: number; maxTokens: number }): Promise<UsageLease> {
    const s = this.settings;
    if (s.maxPromptTokens !== undefined && req.promptTokens > s.maxPromptTokens)
      throw new DajianError(
        "too_large",
        `prompt has ${req.promptTokens} tokens, the limit is ${s.maxPromptTokens}`,
        "shorten the prompt or the conversation",
      );
    if (s.maxTokensCap !== undefined && req.maxTokens > s.maxTokensCap)
      throw new DajianError(
        "invalid_input",
        `max_tokens ${req.maxTokens} is above the cap ${s.maxTokensCap}`,
        `ask for at most ${s.maxTokensCap}`,
      );
    const reserved = Math.max(0, Math.ceil(req.promptTokens)) + Math.max(0, Math.ceil(req.maxTokens));
    const checks: LimitCheck[] = [];
    if (p.kind !== "local" && p.kind !== "anonymous") {
      const now = Date.now();
      const day = new Date(now).toISOString().slice(0, 10);
      const month = day.slice(0, 7);
      const ttl = s.leaseTtlMs ?? 15 * 60_000;
      for (const { subject, limits: l } of this.subjectLimits(p).subjects) {
        if (l.tpm !== undefined)
          checks.push({ kind: "rate", key: `tpm:${subject}`, limit: l.tpm, cost: reserved, windowMs: 60_000 });
        if (l.maxConcurrent !== undefined)
          checks.push({ kind: "concurrency", key: `conc:${subject}`, limit: l.maxConcurrent, ttlMs: ttl });
        if (l.dailyTokens !== undefined)
          checks.push({
            kind: "budget",
            key: `day:${subject}:${day}`,
            limit: l.dailyTokens,
            cost: reserved,
            resetAt: startOfNextUtcDay(now),
          });
        if (l.monthlyTokens !== undefined)
          checks.push({
            kind: "budget",
            key: `month:${subject}:${month}`,
            limit: l.monthlyTokens,
            cost: reserved,
            resetAt: startOfNextUtcMonth(now),
          });
      }
    }
    const leaseId = randomBytes(9).toString("base64url");
    if (checks.length) {
      const r = await this.limits.reserve(checks, leaseId);
      if (!r.ok)
        this.reject(
          r,
          r.failed.kind === "concurrency"
            ? "concurrent request limit"
            : r.failed.kind === "budget"
              ? "token budget"
              : "token rate limit",
        );
    }
    let settled = false;
    return {
      reserved,
      settle: async (usage) => {
        if (settled || checks.length === 0) return;
        settled = true;
        const used = Math.max(0, Math.ceil(usage.promptTokens) + Math.ceil(usage.completionTokens));
        // Refund what was reserved but not used; usage above the reservation (it cannot exceed max_tokens) is
        // charged in full by a negative refund on budgets.
        const refund = checks.map((c) => (c.kind === "concurrency" ? 0 : reserved - used));
        await this.limits.settle(checks, leaseId, refund);
      },
    };
  }

  // ------------------------------------------------------------ administration (audited, escalation-checked)

  private requireAdmin(actor: Principal): void {
    this.acl.check(actor, "admin");
  }

  async createKey(
    actor: Principal,
    req: {
      name: string;
      role: string;
      kbs?: string[];
      models?: string[];
      routes?: string[];
      expires?: string;
      limits?: Limits;
      user?: string;
    },
  ): Promise<CreatedKey> {
    const role = checkRole(req.role);
    const a = actor as AuthedPrincipal;
    let userId: string | undefined;
    if (this.acl.can(actor, "admin") && !a.scope?.routes) {
      userId = req.user ? this.users.require(req.user).id : undefined;
    } else {
      // Non-admins mint keys for themselves only, never above their own role or outside their own scope.
      if (actor.kind === "anonymous" || actor.role === "api_client")
        this.deny(actor, "key.create", "api_client principals cannot create keys");
      if (ROLE_RANK[role] > ROLE_RANK[actor.role])
        this.deny(actor, "key.create", `role ${role} is above your role ${actor.role}`);
      userId = actor.kind === "user" ? actor.id : a.userId;
      if (!userId) this.deny(actor, "key.create", "only keys that belong to a user may create keys");
      if (req.user && this.users.require(req.user).id !== userId)
        this.deny(actor, "key.create", "you may only create keys for yourself");
      for (const axis of ["kbs", "models", "routes"] as const) {
        const mine = a.scope?.[axis];
        const asked = req[axis];
        if (mine && (!asked || asked.some((x) => !mine.includes(x))))
          this.deny(actor, "key.create", `${axis} must stay within your own key's scope (${mine.join(", ")})`);
      }
    }
    const scope: KeyScope = {};
    if (req.kbs?.length) scope.kbs = req.kbs;
    if (req.models?.length) scope.models = req.models;
    if (req.routes?.length) scope.routes = req.routes;
    const created = this.keys.create({
      name: req.name,
      role,
      userId,
      scope,
      limits: req.limits,
      expiresAt: req.expires ? parseExpires(req.expires) : undefined,
      createdBy: ROLE_NAME(actor),
    });
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: "key.create",
      target: `key:${created.id}`,
      ok: true,
      detail: { name: created.name, role, scope, limits: created.limits, expiresAt: created.expiresAt, userId },
    });
    return created;
  }

  listKeys(actor: Principal): KeyInfo[] {
    if (this.acl.can(actor, "admin")) return this.keys.list();
    const userId = actor.kind === "user" ? actor.id : (actor as AuthedPrincipal).userId;
    return userId ? this.keys.list({ userId }) : [];
  }

  revokeKey(actor: Principal, id: string): KeyInfo {
    const k = this.keys.get(id);
    const userId = actor.kind === "user" ? actor.id : (actor as AuthedPrincipal).userId;
    if (!this.acl.can(actor, "admin") && (!userId || k.userId !== userId))
      this.deny(actor, "key.revoke", `key ${id} is not yours`);
    const r = this.keys.revoke(id);
    this.audit.append({ actor: ROLE_NAME(actor), action: "key.revoke", target: `key:${id}`, ok: true });
    return r;
  }

  async addUser(actor: Principal, name: string, role: string, password?: string): Promise<User> {
    this.requireAdmin(actor);
    const u = await this.users.add(name, role, password);
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: "user.add",
      target: `user:${name}`,
      ok: true,
      detail: { role, withPassword: password !== undefined },
    });
    return u;
  }

  async setPassword(actor: Principal, name: string, password: string): Promise<void> {
    const self = actor.kind === "user" && this.users.require(name).id === actor.id;
    if (!self) this.requireAdmin(actor);
    await this.users.setPassword(name, password);
    this.audit.append({ actor: ROLE_NAME(actor), action: "user.password", target: `user:${name}`, ok: true });
  }

  updateUser(actor: Principal, name: string, change: { role?: string; disabled?: boolean }): User {
    this.requireAdmin(actor);
    if (change.role !== undefined) this.users.setRole(name, change.role);
    if (change.disabled !== undefined) this.users.setDisabled(name, change.disabled);
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: "user.update",
      target: `user:${name}`,
      ok: true,
      detail: { ...change },
    });
    return this.users.get(name);
  }

  removeUser(actor: Principal, name: string): void {
    this.requireAdmin(actor);
    this.users.remove(name);
    this.audit.append({ actor: ROLE_NAME(actor), action: "user.remove", target: `user:${name}`, ok: true });
  }

  addGroup(actor: Principal, name: string): void {
    this.requireAdmin(actor);
    this.users.addGroup(name);
    this.audit.append({ actor: ROLE_NAME(actor), action: "group.add", target: `group:${name}`, ok: true });
  }

  removeGroup(actor: Principal, name: string): void {
    this.requireAdmin(actor);
    this.users.removeGroup(name);
    this.audit.append({ actor: ROLE_NAME(actor), action: "group.remove", target: `group:${name}`, ok: true });
  }

  setMembership(actor: Principal, group: string, user: string, member: boolean): void {
    this.requireAdmin(actor);
    if (member) this.users.addMember(group, user);
    else this.users.removeMember(group, user);
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: member ? "group.member.add" : "group.member.remove",
      target: `group:${group}`,
      ok: true,
      detail: { user },
    });
  }

  /** Resolve a subject given as user name, group name, key id or "everyone". */
  subject(kind: SubjectKind, name: string): { kind: SubjectKind; id: string } {
    if (kind === "user") return { kind, id: this.users.require(name).id };
    if (kind === "key") return { kind, id: this.keys.get(name).id };
    if (name !== "everyone" && !this.users.listGroups().some((g) => g.name === name))
      throw new DajianError("not_found", `no group ${name}`, "create it with `dajian groups add`");
    return { kind, id: name };
  }

  /** Grant or revoke `action` on a KB (or one document of it). Admins, and managers of that KB, may do this. */
  setGrant(
    actor: Principal,
    g: { subject: SubjectKind; name: string; kb: string; document?: string; action: string },
    on: boolean,
  ): Grant {
    if (!KB_ACTIONS.includes(g.action as KbAction))
      throw new DajianError("invalid_input", `unknown permission ${g.action}`, `use one of: ${KB_ACTIONS.join(", ")}`);
    if (!this.acl.can(actor, "manage", { kind: "kb", kb: g.kb }))
      this.deny(actor, "grant", `you do not manage knowledge base ${g.kb}`);
    const s = this.subject(g.subject, g.name);
    const grant: Grant = {
      subjectKind: s.kind,
      subjectId: s.id,
      kb: g.kb,
      document: g.document ?? "",
      action: g.action as KbAction,
    };
    if (on) this.acl.grant(grant);
    else this.acl.revoke(grant);
    this.audit.append({
      actor: ROLE_NAME(actor),
      action: on ? "grant" : "revoke",
      target: `kb:${g.kb}${g.document ? "/" + g.document : ""}`,
      ok: true,
      detail: { subject: `${g.subject}:${g.name}`, permission: g.action },
    });
    return grant;
  }

  /** After a knowledge base is created by `p`: its creator manages it (knowledge managers need this to see it). */
  onKbCreated(p: Principal, kb: string): void {
    if (p.kind === "user") this.acl.grant({ subjectKind: "user", subjectId: p.id, kb, document: "", action: "manage" });
    else if (p.kind === "key") {
      const a = p as AuthedPrincipal;
      this.acl.grant(
        a.userId
          ? { subjectKind: "user", subjectId: a.userId, kb, document: "", action: "manage" }
          : { subjectKind: "key", subjectId: p.id, kb, document: "", action: "manage" },
      );
    }
    this.audit.append({ actor: ROLE_NAME(p), action: "kb.create", target: `kb:${kb}`, ok: true });
  }

  onKbDeleted(p: Principal, kb: string): void {
    this.acl.dropKb(kb);
    this.audit.append({ actor: ROLE_NAME(p), action: "kb.delete", target: `kb:${kb}`, ok: true });
  }

  private deny(actor: Principal, action: string, why: string): never {
    this.audit.append({ actor: ROLE_NAME(actor), action: "deny", target: action, ok: false, detail: { why } });
    throw new DajianError("forbidden", `${action} refused: ${why}`, "ask an admin");
  }

  /** Record an event under the principal's name (used by the server for denials, document and model changes). */
  record(p: Principal, action: string, target: string, ok: boolean, detail?: Record<string, unknown>): void {
    this.audit.append({ actor: ROLE_NAME(p), action, target, ok, detail });
  }
}

function redisStore(url: string): LimitStore {
  // A down Redis fails requests (no silent
  // fallback to per-process limits, which would multiply every budget by the number of replicas).
  return new RedisLimitStore(
    new RedisCtor(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false }),
  );
}

export { LOCAL_PRINCIPAL };
export type { Role };

/**
 * Record one audit event from a CLI command (model added/removed, documents ingested or removed on the home dir),
 * so changes made outside the server land in the same hash chain.
 */
export function appendAudit(home: string, config: DajianConfig, ev: AuditEvent): void {
  const sec = Security.open(home, { ...config, redisUrl: undefined });
  try {
    sec.audit.append(ev);
  } finally {
    void sec.close();
  }
}
