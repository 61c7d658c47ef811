// Security hook point of the server. The server calls these for EVERY route in routes.ts, generically:
//   principal = await security.authenticate(req, route)
//   await security.authorize(principal, route, resource)        // throws DajianError forbidden/unauthorized
//   allowDocument = security.documentFilter(principal, kb)      // filters retrieval itself
//   lease = await security.admit(principal, route, {...})       // limits/budgets, settled after the call
// Two implementations: `localSecurity` (auth off: every caller is the local operator, loopback only, requests from
// other sites and other Host names refused) and `authSecurity` (keys, sessions, roles, ACL, limits, audit from
// src/security). `defaultSecurity` picks by config server.auth.
import type { FastifyRequest } from "fastify";
import type { DajianConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { log } from "../core/log.js";
import { configureOutbound } from "../core/outbound.js";
import { openHomeDb, type SqliteDb } from "../store/sqlite.js";
import { safeEqual } from "../security/sessions.js";
import { OidcLogin, oidcSettings } from "../security/oidc.js";
import { Security } from "../security/service.js";
import { LOCAL_PRINCIPAL, type AuthedPrincipal, type Principal } from "../security/types.js";
import type { RouteSpec } from "./routes.js";

/** The object a request acts on, extracted from params/body by the server (see resourceOf in server.ts). */
export type Resource =
  | { kind: "none" }
  | { kind: "model"; model: string; kb?: string }
  | { kind: "kb"; kb: string }
  | { kind: "document"; kb: string; document: string }
  | { kind: "conversation"; id: string; owner?: string }
  | { kind: "job"; id: string; kb?: string };

/** Reservation of limits/budget for one model call; settle with the real usage (or 0s on failure). */
export interface UsageLease {
  settle(usage: { promptTokens: number; completionTokens: number }): void;
}

export interface SecurityHooks {
  /** Who is calling. Throw DajianError("unauthorized") when credentials are missing or wrong. */
  authenticate(req: FastifyRequest, route: RouteSpec): Promise<Principal>;
  /** May `principal` do `route.action` on `resource`? Throw DajianError("forbidden") if not. */
  authorize(principal: Principal, route: RouteSpec, resource: Resource): Promise<void>;
  /** Retrieval filter for `kb` (undefined = no restriction). Applied inside search, before topK is cut. */
  documentFilter(principal: Principal, kb: string): ((documentId: string) => boolean) | undefined;
  /** Which of these knowledge bases the principal may read (used by listings and /v1/models). */
  visibleKbs(principal: Principal, kbs: string[]): string[];
  /** Reserve rate limits / token budget before a model call (throw rate_limited with retryAfter when over). */
  admit(
    principal: Principal,
    route: RouteSpec,
    req: { model: string; promptTokens: number; maxTokens: number },
  ): Promise<UsageLease>;
  /** Record a security-relevant event (denials, document changes …). */
  audit(event: { principal: Principal; action: string; route?: string; target?: string; ok: boolean }): void;
  /** May this server listen on `host`? Throw with a fix when not (e.g. non-loopback while auth is off). */
  checkListen(host: string): void;
  /** The security library behind these hooks (user/key/grant administration routes); absent in bare local mode. */
  admin?: Security;
  /** Single sign-on, when config security.oidc is set and auth is on. */
  oidc?: OidcLogin;
  /** Release resources (DB handle, Redis connection). */
  close?(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"]);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const NO_LEASE: UsageLease = { settle() {} };
const ANONYMOUS: Principal = { kind: "anonymous", id: "anonymous", name: "anonymous", role: "api_client", groups: [] };
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export const AUTH_HINT =
  "enable auth (set server.auth=true in config.json or DAJIAN_AUTH=1) and create an admin key with " +
  "`dajian keys create --name admin --role admin`";

/** Host name of a Host header value ("[::1]:8080" → "::1", "localhost:80" → "localhost"). */
function hostOnly(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") > 0 ? h.indexOf("]") : undefined);
  return h.replace(/:\d+$/, "");
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Refuse requests a browser sends on behalf of another site: DNS rebinding (a foreign Host name pointing at our
 * loopback port) and cross-site requests (Origin of another host, Sec-Fetch-Site cross-site).
 */
function checkBrowserOrigin(req: FastifyRequest, allowedHosts: string[], requireLoopbackHost: boolean): void {
  const host = String(req.headers.host ?? "");
  if (requireLoopbackHost) {
    const h = hostOnly(host);
    if (!isLoopback(h) && !allowedHosts.includes(h))
      throw new DajianError(
        "forbidden",
        `Host '${h}' is not this server's name`,
        "call the server as http://127.0.0.1:PORT or http://localhost:PORT, or add the name to config server.allowedHosts",
      );
  }
  const origin = req.headers.origin;
  if (typeof origin === "string" && origin !== "null" && originHost(origin) !== host.toLowerCase())
    throw new DajianError(
      "forbidden",
      "cross-site request refused",
      "call the API from the dajian page itself or without a browser",
    );
  if (origin === "null" || req.headers["sec-fetch-site"] === "cross-site")
    throw new DajianError(
      "forbidden",
      "cross-site request refused",
      "call the API from the dajian page itself or without a browser",
    );
}

function listenCheck(config: DajianConfig, host: string): void {
  if (!config.server.auth && !isLoopback(host))
    throw new DajianError(
      "forbidden",
      `refusing to listen on ${host} with authentication off`,
      `bind to 127.0.0.1, or ${AUTH_HINT}`,
    );
}

/** Local mode: no authentication, only loopback, only same-origin browser requests. */
export function localSecurity(config: DajianConfig, admin?: Security): SecurityHooks {
  const allowedHosts = ((config.server as { allowedHosts?: string[] }).allowedHosts ?? []).map((h) => h.toLowerCase());
  return {
    admin,
    async authenticate(req) {
      checkBrowserOrigin(req, allowedHosts, true);
      return LOCAL_PRINCIPAL;
    },
    async authorize() {},
    documentFilter() {
      return undefined;
    },
    visibleKbs(_p, kbs) {
      return kbs;
    },
    async admit() {
      return NO_LEASE;
    },
    audit(e) {
      admin?.record(e.principal, e.action, e.target ?? e.route ?? "", e.ok, e.route ? { route: e.route } : undefined);
    },
    checkListen(host) {
      listenCheck(config, host);
    },
    async close() {
      await admin?.close();
    },
  };
}

export const SESSION_COOKIE = "dajian_session";
export const CSRF_COOKIE = "dajian_csrf";
export const CSRF_HEADER = "x-csrf-token";
/** Binds an OIDC sign-in to the browser that started it (holds the flow's random state). */
export const OIDC_COOKIE = "dajian_oidc";

export function readCookie(req: FastifyRequest, name: string): string | undefined {
  const raw = req.headers.cookie;
  if (typeof raw !== "string" || raw.length > 8192) return undefined;
  for (const part of raw.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

const BEARER = /^Bearer +([\x21-\x7e]{1,200})$/i;
const BARE_KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * The API key a request presents: `Authorization: Bearer KEY` (OpenAI clients) or `api-key: KEY` (Azure-style
 * clients). undefined = no key header at all (try the session cookie); "" = a key header that cannot be valid —
 * malformed, repeated, or two headers naming different keys (refused rather than guessing which one counts).
 */
export function presentedKey(req: FastifyRequest): string | undefined {
  const auth = req.headers.authorization;
  const alt = req.headers["api-key"];
  if (auth === undefined && alt === undefined) return undefined;
  let key: string | undefined;
  if (auth !== undefined) key = BEARER.exec(String(auth))?.[1] ?? "";
  if (alt !== undefined) {
    const k = typeof alt === "string" && BARE_KEY.test(alt) ? alt : "";
    if (key !== undefined && key !== k) return "";
    key = k;
  }
  return key;
}

function routeInScope(routes: string[] | undefined, id: string): boolean {
  return routes === undefined || routes.some((r) => r === id || (r.endsWith("*") && id.startsWith(r.slice(0, -1))));
}

/** Document names/ids of a knowledge base, for grants made by document name (kb_documents of src/index). */
function sqliteDocumentResolver(db: SqliteDb) {
  let stmt: { all(...a: unknown[]): unknown[] } | undefined;
  return (kb: string, ref: string): string[] => {
    try {
      stmt ??= db.prepare(
        "SELECT d.id, d.name FROM kb_documents d JOIN kbs k ON k.id = d.kb_id WHERE k.name = ? AND (d.name = ? OR CAST(d.id AS TEXT) = ?)",
      );
      const rows = stmt.all(kb, ref, ref) as { id: number; name: string }[];
      return rows.flatMap((r) => [String(r.id), r.name]);
    } catch {
      return []; // index tables not there yet: nothing to resolve (the name itself is still matched)
    }
  };
}

/** Auth mode: API keys (Bearer) or session cookies, roles + grants, limits, audit. */
export function authSecurity(sec: Security, config: DajianConfig): SecurityHooks {
  const settings = sec.settings;
  const streamCap = settings.maxConcurrentStreams ?? 8;
  const streams = new Map<string, number>();
  const failedAudit = new Map<string, number>();

  function auditFailure(req: FastifyRequest, reason: string): void {
    // One audit entry per address per minute: a credential spray must not flood the log.
    const now = Date.now();
    if ((failedAudit.get(req.ip) ?? 0) > now - 60_000) return;
    if (failedAudit.size > 10_000) failedAudit.clear();
    failedAudit.set(req.ip, now);
    sec.record(ANONYMOUS, "auth.failed", `${req.method} ${req.url.split("?")[0]}`.slice(0, 200), false, {
      addr: req.ip,
      reason,
    });
  }

  async function authenticate(req: FastifyRequest, route: RouteSpec): Promise<Principal> {
    if (route.action === "public") return ANONYMOUS;
    let p: AuthedPrincipal | null = null;
    const presented = presentedKey(req);
    if (presented !== undefined) {
      p = presented ? sec.principalForKey(presented) : null;
      if (!p) {
        auditFailure(req, "bad key");
        throw new DajianError(
          "unauthorized",
          "invalid, expired or revoked API key",
          "send `Authorization: Bearer <key>` (or `api-key: <key>`) with a key from `dajian keys create`",
        );
      }
    } else {
      const token = readCookie(req, SESSION_COOKIE);
      if (token) p = sec.principalForSession(token);
      if (!p) {
        if (token) auditFailure(req, "bad session");
        throw new DajianError(
          "unauthorized",
          "authentication required",
          "sign in on the web page, or send `Authorization: Bearer <key>` (create one with `dajian keys create`)",
        );
      }
      // Cookies ride along on cross-site requests: require same origin, and the CSRF token on state changes.
      checkBrowserOrigin(req, [], false);
      if (!SAFE_METHODS.has(req.method)) {
        const sent = req.headers[CSRF_HEADER];
        if (typeof sent !== "string" || !safeEqual(sent, p.session!.csrf))
          throw new DajianError(
            "forbidden",
            "missing or wrong CSRF token",
            `send the token from the login response in the ${CSRF_HEADER} header`,
          );
      }
    }
    if (!routeInScope(p.scope?.routes, route.id))
      throw new DajianError(
        "forbidden",
        `this key may not call ${route.id}`,
        "use a key whose --route scope includes it",
      );
    await sec.checkRequest(p);
    return p;
  }

  function deny(p: Principal, what: string): never {
    throw new DajianError(
      "forbidden",
      `${p.name} (${p.role}) may not ${what}`,
      "ask an admin for a grant (`dajian grant`) or use a key with the needed role/scope",
    );
  }

  async function authorize(p: Principal, route: RouteSpec, res: Resource): Promise<void> {
    const action = route.action as string;
    if (action === "public") return;
    if (p.kind === "anonymous")
      throw new DajianError("unauthorized", "authentication required", "send `Authorization: Bearer <key>`");
    switch (action) {
      case "authenticated":
      case "kb:list":
        return;
      case "admin":
        if (!sec.acl.can(p, "admin")) deny(p, `use ${route.id} (admin only)`);
        return;
      case "kb:create":
        if (!sec.acl.can(p, "kb:create")) deny(p, "create knowledge bases");
        return;
      case "model:use":
        if (res.kind === "model" && !sec.acl.can(p, "model:use", { kind: "model", model: res.model })) {
          // Same answer for a KB that exists and one that does not: no probing of names.
          deny(p, `use model ${res.model}`);
        }
        return;
      case "conversation:own":
        // Fail closed: an owner we could not look up counts as someone else's. Same answer as "does not exist".
        if (res.kind === "conversation" && res.owner !== p.id && !sec.acl.can(p, "admin"))
          throw new DajianError(
            "not_found",
            `conversation ${res.id} not found`,
            "list yours with GET /api/conversations",
          );
        return;
      case "read":
      case "write":
      case "manage": {
        let kb: string | undefined;
        if (res.kind === "kb" || res.kind === "document") kb = res.kb;
        else if (res.kind === "job") {
          if (res.kb === undefined)
            throw new DajianError("not_found", `job ${res.id} not found`, "jobs are kept while the server runs");
          kb = res.kb;
        }
        if (kb === undefined) deny(p, route.id);
        const target =
          res.kind === "document"
            ? ({ kind: "document", kb, document: res.document } as const)
            : ({ kind: "kb", kb } as const);
        if (!sec.acl.can(p, action, target))
          deny(p, `${action} ${res.kind === "document" ? `document ${res.document} in ` : ""}knowledge base ${kb}`);
        return;
      }
      default:
        deny(p, `use ${route.id} (route has no known permission: deny by default)`);
    }
  }

  return {
    admin: sec,
    authenticate,
    authorize,
    documentFilter(p, kb) {
      return sec.acl.allowDocumentFor(p, kb);
    },
    visibleKbs(p, kbs) {
      return sec.acl.visibleKbs(p, kbs);
    },
    async admit(p, route, req) {
      let streamKey: string | undefined;
      if (route.streams && p.kind !== "local") {
        streamKey = `${p.kind}:${p.id}`;
        const n = streams.get(streamKey) ?? 0;
        if (n >= streamCap)
          throw new DajianError(
            "rate_limited",
            `too many concurrent streams (${streamCap})`,
            "wait for a running answer to finish",
            { retryAfter: 1 },
          );
        streams.set(streamKey, n + 1);
      }
      let lease;
      try {
        lease = await sec.admit(p, { promptTokens: req.promptTokens, maxTokens: req.maxTokens });
      } catch (err) {
        if (streamKey) streams.set(streamKey, (streams.get(streamKey) ?? 1) - 1);
        throw err;
      }
      let done = false;
      return {
        settle(usage) {
          if (done) return;
          done = true;
          if (streamKey) {
            const n = (streams.get(streamKey) ?? 1) - 1;
            if (n <= 0) streams.delete(streamKey);
            else streams.set(streamKey, n);
          }
          lease.settle(usage).catch((err: unknown) => log.warn("could not settle token budget", { err: String(err) }));
        },
      };
    },
    audit(e) {
      if (e.ok && e.action === "kb.create" && e.target) sec.onKbCreated(e.principal, e.target);
      else if (e.ok && e.action === "kb.delete" && e.target) sec.onKbDeleted(e.principal, e.target);
      else sec.record(e.principal, e.action, e.target ?? e.route ?? "", e.ok, e.route ? { route: e.route } : undefined);
    },
    checkListen(host) {
      listenCheck(config, host);
    },
    async close() {
      await sec.close();
    },
  };
}

/** The hooks `createServer` uses unless given others: auth mode when server.auth is on, else local mode. */
export function defaultSecurity(home: string, config: DajianConfig): SecurityHooks {
  // Outbound requests made while serving (remote providers, URL import) follow config outbound.allowHosts.
  configureOutbound({ allowHosts: (config.outbound as { allowHosts?: string[] } | undefined)?.allowHosts ?? [] });
  const db = openHomeDb(home);
  const sec = Security.open(home, config, { db, resolveDocument: sqliteDocumentResolver(db) });
  const hooks = config.server.auth ? authSecurity(sec, config) : localSecurity(config, sec);
  // Validated here, at server start, so a broken OIDC config fails fast with its fix instead of at the first sign-in.
  const oidc = config.server.auth ? oidcSettings(config) : undefined;
  if (oidc) hooks.oidc = new OidcLogin(sec, oidc);
  if (config.server.auth && sec.keys.list().length === 0 && !sec.users.list().some((u) => u.hasPassword))
    log.warn("authentication is on but no API key or login exists yet", {
      fix: "dajian keys create --name admin --role admin",
    });
  const close = hooks.close;
  hooks.close = async () => {
    await close?.();
    db.close();
  };
  return hooks;
}
