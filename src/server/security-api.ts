// Handlers of the security API (specs in security-routes.ts). Thin: every decision is made in src/security.
import type { FastifyReply, FastifyRequest } from "fastify";
import { DajianError } from "../core/errors.js";
import type { OidcLogin } from "../security/oidc.js";
import type { Security } from "../security/service.js";
import type { Session } from "../security/sessions.js";
import type { AuthedPrincipal, Limits } from "../security/types.js";
import { CSRF_COOKIE, OIDC_COOKIE, SESSION_COOKIE, readCookie } from "./auth.js";
import type { Handler, HandlerTable, ServerContext } from "./context.js";

function sec(sc: ServerContext): Security {
  const s = sc.security.admin;
  if (!s)
    throw new DajianError(
      "unsupported",
      "this server has no security store",
      "use the CLI (`dajian keys`, `dajian users`)",
    );
  return s;
}

function cookie(
  req: FastifyRequest,
  sc: ServerContext,
  name: string,
  value: string,
  maxAgeS: number,
  httpOnly: boolean,
  opts: { sameSite?: "Strict" | "Lax"; path?: string } = {},
): string {
  const secure =
    req.protocol === "https" || (sc.config.security as { secureCookies?: boolean } | undefined)?.secureCookies === true;
  return [
    `${name}=${value}`,
    `Path=${opts.path ?? "/"}`,
    `Max-Age=${maxAgeS}`,
    `SameSite=${opts.sameSite ?? "Strict"}`,
    httpOnly ? "HttpOnly" : "",
    secure ? "Secure" : "",
  ]
    .filter(Boolean)
    .join("; ");
}

function sessionCookies(req: FastifyRequest, sc: ServerContext, session: Session): string[] {
  const maxAge = Math.floor((session.expiresAt - Date.now()) / 1000);
  return [
    cookie(req, sc, SESSION_COOKIE, session.token, maxAge, true),
    cookie(req, sc, CSRF_COOKIE, session.csrf, maxAge, false),
  ];
}

function oidcOf(sc: ServerContext): OidcLogin {
  if (!sc.config.server.auth || !sc.security.oidc)
    throw new DajianError(
      "not_found",
      "single sign-on is not configured",
      "set security.oidc in config.json (see the security section of the README) and turn auth on",
    );
  return sc.security.oidc;
}

// The binding cookie rides the provider's top-level redirect back to us, so it must be SameSite=Lax (Strict would
// be withheld on that cross-site navigation); it holds only the random state and lives for the flow's 10 minutes.
const OIDC_COOKIE_OPTS = { sameSite: "Lax", path: "/api/auth/oidc" } as const;

const oidcLogin: Handler = async (req, reply, _rc, sc) => {
  const { url, state } = await oidcOf(sc).begin();
  reply.header("set-cookie", cookie(req, sc, OIDC_COOKIE, state, 600, true, OIDC_COOKIE_OPTS));
  reply.header("cache-control", "no-store");
  return reply.redirect(url, 302);
};

const oidcCallback: Handler = async (req, reply, _rc, sc) => {
  const query = new URLSearchParams(req.query as Record<string, string>);
  const { session } = await oidcOf(sc).complete(query, readCookie(req, OIDC_COOKIE), req.ip);
  reply.header("set-cookie", [
    cookie(req, sc, OIDC_COOKIE, "", 0, true, OIDC_COOKIE_OPTS),
    ...sessionCookies(req, sc, session),
  ]);
  reply.header("cache-control", "no-store");
  return reply.redirect("/", 302);
};

const login: Handler = async (req, reply, _rc, sc) => {
  if (!sc.config.server.auth)
    throw new DajianError(
      "unsupported",
      "authentication is off: there is nothing to sign in to",
      "enable server.auth to use logins",
    );
  const { name, password } = req.body as { name: string; password: string };
  const { session, user } = await sec(sc).login(name, password, req.ip);
  reply.header("set-cookie", sessionCookies(req, sc, session));
  return { user, csrfToken: session.csrf, expiresAt: new Date(session.expiresAt).toISOString() };
};

const logout: Handler = async (req, reply: FastifyReply, rc, sc) => {
  const token = readCookie(req, SESSION_COOKIE);
  if (token) sec(sc).logout(rc.principal, token);
  reply.header("set-cookie", [
    cookie(req, sc, SESSION_COOKIE, "", 0, true),
    cookie(req, sc, CSRF_COOKIE, "", 0, false),
  ]);
  return { ok: true };
};

const me: Handler = async (_req, _reply, rc) => {
  const p = rc.principal as AuthedPrincipal;
  return {
    kind: p.kind,
    id: p.id,
    name: p.name,
    role: p.role,
    groups: p.groups,
    scope: p.scope,
    csrfToken: p.session?.csrf,
  };
};

const keysList: Handler = async (_req, _reply, rc, sc) => ({ keys: sec(sc).listKeys(rc.principal) });

const keysCreate: Handler = async (req, reply, rc, sc) => {
  const b = req.body as {
    name: string;
    role: string;
    kbs?: string[];
    models?: string[];
    routes?: string[];
    expires?: string;
    user?: string;
    limits?: Limits;
  };
  reply.code(201);
  return sec(sc).createKey(rc.principal, b);
};

const keysRevoke: Handler = async (req, _reply, rc, sc) =>
  sec(sc).revokeKey(rc.principal, (req.params as { id: string }).id);

const usersList: Handler = async (_req, _reply, _rc, sc) => ({ users: sec(sc).users.list() });

const usersCreate: Handler = async (req, reply, rc, sc) => {
  const b = req.body as { name: string; role: string; password?: string };
  reply.code(201);
  return sec(sc).addUser(rc.principal, b.name, b.role, b.password);
};

const usersUpdate: Handler = async (req, _reply, rc, sc) => {
  const { user } = req.params as { user: string };
  const b = req.body as { role?: string; disabled?: boolean; password?: string; limits?: Limits };
  const s = sec(sc);
  if (b.password !== undefined) await s.setPassword(rc.principal, user, b.password);
  if (b.limits) s.setLimits(rc.principal, { kind: "user", name: user }, b.limits);
  return s.updateUser(rc.principal, user, { role: b.role, disabled: b.disabled });
};

const usersDelete: Handler = async (req, _reply, rc, sc) => {
  const { user } = req.params as { user: string };
  sec(sc).removeUser(rc.principal, user);
  return { deleted: user };
};

const groupsList: Handler = async (_req, _reply, _rc, sc) => ({ groups: sec(sc).users.listGroups() });

const groupsCreate: Handler = async (req, reply, rc, sc) => {
  const b = req.body as { name: string; limits?: Limits };
  sec(sc).addGroup(rc.principal, b.name);
  if (b.limits) sec(sc).setLimits(rc.principal, { kind: "group", name: b.name }, b.limits);
  reply.code(201);
  return { name: b.name };
};

const groupsMembers: Handler = async (req, _reply, rc, sc) => {
  const { group } = req.params as { group: string };
  const b = req.body as { user: string; remove?: boolean };
  sec(sc).setMembership(rc.principal, group, b.user, !b.remove);
  return { group, user: b.user, member: !b.remove };
};

const grantsList: Handler = async (req, _reply, _rc, sc) => ({
  grants: sec(sc).acl.list({ kb: (req.query as { kb?: string }).kb }),
});

const grantsSet: Handler = async (req, _reply, rc, sc) => {
  const b = req.body as {
    subject: "user" | "group" | "key";
    name: string;
    kb: string;
    document?: string;
    permission: string;
    remove?: boolean;
  };
  return sec(sc).setGrant(
    rc.principal,
    { subject: b.subject, name: b.name, kb: b.kb, document: b.document, action: b.permission },
    !b.remove,
  );
};

const auditList: Handler = async (req, _reply, _rc, sc) => {
  const q = req.query as { limit?: string; action?: string };
  const limit = q.limit === undefined ? 100 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1)
    throw new DajianError("invalid_input", "limit must be a positive whole number", "e.g. ?limit=100");
  return { entries: sec(sc).audit.list({ limit, action: q.action }) };
};

const auditVerify: Handler = async (_req, _reply, _rc, sc) => sec(sc).audit.verify();

export const securityHandlers: HandlerTable = {
  "auth.login": login,
  "auth.logout": logout,
  "auth.me": me,
  "auth.oidc.login": oidcLogin,
  "auth.oidc.callback": oidcCallback,
  "keys.list": keysList,
  "keys.create": keysCreate,
  "keys.revoke": keysRevoke,
  "users.list": usersList,
  "users.create": usersCreate,
  "users.update": usersUpdate,
  "users.delete": usersDelete,
  "groups.list": groupsList,
  "groups.create": groupsCreate,
  "groups.members": groupsMembers,
  "grants.list": grantsList,
  "grants.set": grantsSet,
  "audit.list": auditList,
  "audit.verify": auditVerify,
};
