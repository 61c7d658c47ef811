// Who is calling, and what they may do. Produced by authentication (API key, session cookie, or the local CLI),
// consumed by every entry point. Permission checks live in src/security; other stages only pass the Principal on.

export type Role = "admin" | "knowledge_manager" | "member" | "api_client";

export type KbAction = "read" | "write" | "manage";

export interface Principal {
  kind: "local" | "user" | "key" | "anonymous";
  /** User id or key id ("local" for the CLI on its own home dir). */
  id: string;
  name: string;
  role: Role;
  groups: string[];
}

/** The local operator running the CLI on their own home dir: full rights, like a DB owner using psql locally. */
export const LOCAL_PRINCIPAL: Principal = { kind: "local", id: "local", name: "local", role: "admin", groups: [] };

// ---- security extensions (additive) ----

export const ROLES: readonly Role[] = ["admin", "knowledge_manager", "member", "api_client"];
export const KB_ACTIONS: readonly KbAction[] = ["read", "write", "manage"];

/** Restrictions carried by an API key on top of its role: undefined = no restriction on that axis. */
export interface KeyScope {
  kbs?: string[];
  models?: string[];
  /** Route ids (server route table) or prefixes ending in "*" (e.g. "v1.*"). */
  routes?: string[];
}

/** Per-subject limits (keys, users, groups). Undefined = unlimited on that axis. */
export interface Limits {
  rpm?: number;
  tpm?: number;
  maxConcurrent?: number;
  dailyTokens?: number;
  monthlyTokens?: number;
}

/** What a Principal may act on. */
export type SecResource =
  | { kind: "system" }
  | { kind: "kb"; kb: string }
  | { kind: "document"; kb: string; document: string }
  | { kind: "model"; model: string };

/** Actions beyond per-KB ones: using models, listing/creating KBs, administering users/keys/audit. */
export type SecAction = KbAction | "model:use" | "kb:list" | "kb:create" | "admin";

/** Principal with the details the security layer attaches after authentication. */
export interface AuthedPrincipal extends Principal {
  /** The user a key belongs to (keys created by a user act with at most that user's rights). */
  userId?: string;
  scope?: KeyScope;
  /** Session-authenticated (cookie): state-changing requests need the CSRF token. */
  session?: { csrf: string };
  /** The key's own limits (user and group limits are looked up by the limiter). */
  limits?: Limits;
}
