// Who may do what: roles set a ceiling, grants (to users, groups, keys, or the implicit group "everyone") give
// per-knowledge-base and per-document rights, API-key scopes narrow further. Document-level read grants make a
// document *restricted*: only those granted (and KB managers) may read it; everyone else's retrieval never sees it.
import { DajianError } from "../core/errors.js";
import type { SqliteDb } from "../store/sqlite.js";
import { Lru } from "./lru.js";
import { EVERYONE } from "./users.js";
import {
  KB_ACTIONS,
  type AuthedPrincipal,
  type KbAction,
  type Principal,
  type Role,
  type SecAction,
  type SecResource,
} from "./types.js";

export type SubjectKind = "user" | "group" | "key";

export interface Grant {
  subjectKind: SubjectKind;
  subjectId: string;
  kb: string;
  /** Empty = the whole knowledge base. */
  document: string;
  action: KbAction;
}

/** Maps a document reference (name as ingested, or id) to the ids retrieval uses. */
export type DocumentResolver = (kb: string, ref: string) => string[];

const LEVEL: Record<KbAction, number> = { read: 1, write: 2, manage: 3 };
/** The most a role can ever do on a knowledge base, whatever it is granted. */
const ROLE_CEILING: Record<Role, number> = { api_client: 1, member: 2, knowledge_manager: 3, admin: 3 };
/** What a KB listed in a key's scope gives that key by itself (a key scoped to kb X is meant to use X). */
const SCOPE_IMPLIES: Record<Role, number> = { api_client: 1, member: 1, knowledge_manager: 2, admin: 3 };

function subjects(p: Principal): [SubjectKind, string][] {
  const a = p as AuthedPrincipal;
  const out: [SubjectKind, string][] = [["group", EVERYONE]];
  if (p.kind === "user") out.push(["user", p.id]);
  if (p.kind === "key") {
    out.push(["key", p.id]);
    if (a.userId) out.push(["user", a.userId]);
  }
  for (const g of p.groups) out.push(["group", g]);
  return out;
}

function inScope(list: string[] | undefined, name: string): boolean {
  return list === undefined || list.includes(name);
}

/** What one principal may do on one knowledge base; `hidden`/`filter` are filled on first use (null = no filter). */
interface KbEntry {
  level: number;
  hidden?: Set<string>;
  filter?: ((documentId: string) => boolean) | null;
}

/** Changes whenever anything in the database may have changed (see Security.version). */
export type VersionFn = () => string;

// Principals are never mutated after authentication (cached key principals are shared between requests), so the
// cache key of one is computed once per object.
const principalKeys = new WeakMap<Principal, string>();

/** Everything about a principal that permission and limit answers depend on, as one string. */
export function principalKey(p: Principal): string {
  let k = principalKeys.get(p);
  if (k === undefined) {
    const a = p as AuthedPrincipal;
    k = `${p.kind}|${p.id}|${p.role}|${p.groups.join(",")}|${a.userId ?? ""}|${a.scope?.kbs?.join(",") ?? "*"}`;
    principalKeys.set(p, k);
  }
  return k;
}

export class Acl {
  // Per-request permission answers are memoised until the database changes (any writer, any process), so the
  // hot path is a version check and two map lookups.
  private memoVersion = "";
  private readonly entries = new Lru<string, KbEntry>(50_000);

  constructor(
    private readonly db: SqliteDb,
    private readonly resolveDoc: DocumentResolver = (_kb, ref) => [ref],
    private readonly version?: VersionFn,
  ) {}

  private fresh(): void {
    if (!this.version) return;
    const v = this.version();
    if (v !== this.memoVersion) {
      this.memoVersion = v;
      this.entries.clear();
    }
  }

  grant(g: Grant): void {
    if (!KB_ACTIONS.includes(g.action))
      throw new DajianError("invalid_input", `unknown permission ${g.action}`, `use one of: ${KB_ACTIONS.join(", ")}`);
    this.db
      .prepare(
        "INSERT OR IGNORE INTO sec_grants (subject_kind, subject_id, kb, document, action, created_at) VALUES (?,?,?,?,?,?)",
      )
      .run(g.subjectKind, g.subjectId, g.kb, g.document, g.action, Date.now());
  }

  revoke(g: Grant): boolean {
    return (
      this.db
        .prepare(
          "DELETE FROM sec_grants WHERE subject_kind = ? AND subject_id = ? AND kb = ? AND document = ? AND action = ?",
        )
        .run(g.subjectKind, g.subjectId, g.kb, g.document, g.action).changes > 0
    );
  }

  list(filter: { kb?: string } = {}): Grant[] {
    const rows = (
      filter.kb
        ? this.db
            .prepare("SELECT * FROM sec_grants WHERE kb = ? ORDER BY kb, document, subject_kind, subject_id")
            .all(filter.kb)
        : this.db.prepare("SELECT * FROM sec_grants ORDER BY kb, document, subject_kind, subject_id").all()
    ) as { subject_kind: SubjectKind; subject_id: string; kb: string; document: string; action: KbAction }[];
    return rows.map((r) => ({
      subjectKind: r.subject_kind,
      subjectId: r.subject_id,
      kb: r.kb,
      document: r.document,
      action: r.action,
    }));
  }

  /** Drop every grant on a knowledge base (when it is deleted, so a new KB of the same name starts closed). */
  dropKb(kb: string): void {
    this.db.prepare("DELETE FROM sec_grants WHERE kb = ?").run(kb);
  }

  private grantedLevel(p: Principal, kb: string, document: string): number {
    const subs = subjects(p);
    const where = subs.map(() => "(subject_kind = ? AND subject_id = ?)").join(" OR ");
    const rows = this.db
      .prepare(`SELECT action FROM sec_grants WHERE kb = ? AND document = ? AND (${where})`)
      .pluck()
      .all(kb, document, ...subs.flat()) as KbAction[];
    return Math.max(0, ...rows.map((a) => LEVEL[a]));
  }

  /** 0 = none, 1 read, 2 write, 3 manage — on the knowledge base as a whole. */
  kbLevel(p: Principal, kb: string): number {
    return this.entry(p, kb).level;
  }

  /** The memoised answers for one principal on one knowledge base (one map lookup per question). */
  private entry(p: Principal, kb: string): KbEntry {
    if (!this.version) return { level: this.computeLevel(p, kb) };
    this.fresh();
    const k = `${principalKey(p)}#${kb}`;
    let e = this.entries.get(k);
    if (e === undefined) this.entries.set(k, (e = { level: this.computeLevel(p, kb) }));
    return e;
  }

  private computeLevel(p: Principal, kb: string): number {
    const a = p as AuthedPrincipal;
    if (!inScope(a.scope?.kbs, kb)) return 0;
    if (p.role === "admin" || p.kind === "local") return 3;
    let level = this.grantedLevel(p, kb, "");
    if (a.scope?.kbs?.includes(kb)) level = Math.max(level, SCOPE_IMPLIES[p.role]);
    return Math.min(level, ROLE_CEILING[p.role]);
  }

  /** Names of documents in `kb` that are restricted and that `p` may not read. */
  private hiddenDocuments(p: Principal, kb: string): string[] {
    const restricted = this.db
      .prepare("SELECT DISTINCT document FROM sec_grants WHERE kb = ? AND document != '' AND action = 'read'")
      .pluck()
      .all(kb) as string[];
    return restricted.filter((d) => this.grantedLevel(p, kb, d) < 1);
  }

  /** Hidden documents as both the names they were granted under and the ids retrieval uses. */
  private hiddenIds(p: Principal, kb: string, e = this.entry(p, kb)): Set<string> {
    return (e.hidden ??= this.computeHidden(p, kb));
  }

  private computeHidden(p: Principal, kb: string): Set<string> {
    const ids = new Set<string>();
    for (const d of this.hiddenDocuments(p, kb)) {
      ids.add(d);
      for (const id of this.resolveDoc(kb, d)) ids.add(id);
    }
    return ids;
  }

  can(p: Principal, action: SecAction, res: SecResource = { kind: "system" }): boolean {
    const a = p as AuthedPrincipal;
    if (p.kind === "anonymous") return false;
    switch (action) {
      case "admin":
        return p.role === "admin" || p.kind === "local";
      case "kb:list":
        return true;
      case "kb:create":
        return (
          (p.role === "admin" || p.role === "knowledge_manager" || p.kind === "local") && a.scope?.kbs === undefined
        );
      case "model:use": {
        if (res.kind !== "model") return true;
        if (res.model.startsWith("kb:")) return this.kbLevel(p, res.model.slice(3)) >= 1;
        return inScope(a.scope?.models, res.model);
      }
      default: {
        if (res.kind !== "kb" && res.kind !== "document") return false;
        const level = this.kbLevel(p, res.kb);
        if (level < LEVEL[action]) return false;
        if (res.kind === "kb" || level >= 3) return true;
        return !this.hiddenIds(p, res.kb).has(res.document);
      }
    }
  }

  /** Throwing form of `can`, with a message that says what is missing. */
  check(p: Principal, action: SecAction, res: SecResource = { kind: "system" }): void {
    if (this.can(p, action, res)) return;
    const what =
      res.kind === "kb"
        ? `knowledge base ${res.kb}`
        : res.kind === "document"
          ? `document ${res.document} in ${res.kb}`
          : res.kind === "model"
            ? `model ${res.model}`
            : "this operation";
    throw new DajianError(
      "forbidden",
      `${p.name} (${p.role}) may not ${action} ${what}`,
      "ask an admin for a grant (`dajian grant`) or use a key with the needed role/scope",
    );
  }

  /**
   * The retrieval filter for `kb` (plugs into SearchOptions.allowDocument). Undefined = no restriction.
   * A principal without read on the KB gets a filter that admits nothing (defence in depth: authorize() denies first).
   */
  allowDocumentFor(p: Principal, kb: string): ((documentId: string) => boolean) | undefined {
    const e = this.entry(p, kb);
    if (e.filter !== undefined) return e.filter ?? undefined;
    let f: ((documentId: string) => boolean) | null = null;
    if (e.level < 1) f = () => false;
    else if (e.level < 3) {
      const ids = this.hiddenIds(p, kb, e);
      if (ids.size > 0) f = (documentId) => !ids.has(documentId);
    }
    e.filter = f;
    return f ?? undefined;
  }

  /** The knowledge bases among `kbs` that `p` may read. */
  visibleKbs(p: Principal, kbs: string[]): string[] {
    return kbs.filter((kb) => this.kbLevel(p, kb) >= 1);
  }
}
