// Route specs of the security API (login, keys, users, groups, grants, audit). Merged into the one route table in
// routes.ts, so they pass the same generic authenticate → authorize pipeline and appear in the authorization matrix.
import type { FastifySchema } from "fastify";

const NAME = { type: "string", minLength: 1, maxLength: 128 } as const;
const LIST = { type: "array", maxItems: 100, items: NAME } as const;
const LIMITS = {
  type: "object",
  additionalProperties: false,
  properties: Object.fromEntries(
    ["rpm", "tpm", "maxConcurrent", "dailyTokens", "monthlyTokens"].map((k) => [k, { type: "integer", minimum: 0 }]),
  ),
} as const;

const body = (required: string[], properties: Record<string, unknown>, params?: string): FastifySchema => ({
  body: { type: "object", required, additionalProperties: false, properties },
  ...(params ? paramsOf(params) : {}),
});
const paramsOf = (name: string): FastifySchema => ({
  params: { type: "object", required: [name], properties: { [name]: NAME } },
});
const NONE: FastifySchema = {};
/** Bodiless POST: accept an empty body or an empty object only. */
const EMPTY_BODY: FastifySchema = { body: { type: ["object", "null"], additionalProperties: false, properties: {} } };

export const SECURITY_ROUTES = [
  {
    id: "auth.login",
    method: "POST",
    path: "/api/auth/login",
    action: "public",
    resource: "none",
    schema: body(["name", "password"], { name: NAME, password: { type: "string", maxLength: 1024 } }),
    description: "sign in with a password; sets the session cookie and returns the CSRF token",
  },
  {
    id: "auth.logout",
    method: "POST",
    path: "/api/auth/logout",
    action: "authenticated",
    resource: "none",
    schema: EMPTY_BODY,
    description: "end the session",
  },
  {
    id: "auth.me",
    method: "GET",
    path: "/api/auth/me",
    action: "authenticated",
    resource: "none",
    schema: NONE,
    description: "who is calling (and the CSRF token of a session)",
  },
  {
    id: "auth.oidc.login",
    method: "GET",
    path: "/api/auth/oidc/login",
    action: "public",
    resource: "none",
    schema: NONE,
    description: "single sign-on: redirect to the OIDC provider (404 when security.oidc is not configured)",
  },
  {
    id: "auth.oidc.callback",
    method: "GET",
    path: "/api/auth/oidc/callback",
    action: "public",
    resource: "none",
    schema: {
      querystring: {
        type: "object",
        properties: Object.fromEntries(
          ["code", "state", "iss", "error", "error_description", "session_state"].map((k) => [
            k,
            { type: "string", maxLength: 4096 },
          ]),
        ),
      },
    },
    description: "single sign-on: the provider returns here; sets the session cookie and redirects to the page",
  },
  {
    id: "keys.list",
    method: "GET",
    path: "/api/keys",
    action: "authenticated",
    resource: "none",
    schema: NONE,
    description: "API keys (admins: all; others: their own)",
  },
  {
    id: "keys.create",
    method: "POST",
    path: "/api/keys",
    action: "authenticated",
    resource: "none",
    schema: body(["name", "role"], {
      name: NAME,
      role: NAME,
      kbs: LIST,
      models: LIST,
      routes: LIST,
      expires: NAME,
      user: NAME,
      limits: LIMITS,
    }),
    description: "create a key (never above the caller's role or scope); the secret is in this response only",
  },
  {
    id: "keys.revoke",
    method: "DELETE",
    path: "/api/keys/:id",
    action: "authenticated",
    resource: "none",
    schema: paramsOf("id"),
    description: "revoke a key (admins: any; others: their own)",
  },
  {
    id: "users.list",
    method: "GET",
    path: "/api/users",
    action: "admin",
    resource: "none",
    schema: NONE,
    description: "users",
  },
  {
    id: "users.create",
    method: "POST",
    path: "/api/users",
    action: "admin",
    resource: "none",
    schema: body(["name", "role"], { name: NAME, role: NAME, password: { type: "string", maxLength: 1024 } }),
    description: "add a user",
  },
  {
    id: "users.update",
    method: "POST",
    path: "/api/users/:user",
    action: "admin",
    resource: "none",
    schema: body(
      [],
      { role: NAME, disabled: { type: "boolean" }, password: { type: "string", maxLength: 1024 }, limits: LIMITS },
      "user",
    ),
    description: "change a user's role, password, limits or disable them",
  },
  {
    id: "users.delete",
    method: "DELETE",
    path: "/api/users/:user",
    action: "admin",
    resource: "none",
    schema: paramsOf("user"),
    description: "remove a user with their keys, sessions and grants",
  },
  {
    id: "groups.list",
    method: "GET",
    path: "/api/groups",
    action: "admin",
    resource: "none",
    schema: NONE,
    description: "groups",
  },
  {
    id: "groups.create",
    method: "POST",
    path: "/api/groups",
    action: "admin",
    resource: "none",
    schema: body(["name"], { name: NAME, limits: LIMITS }),
    description: "create a group",
  },
  {
    id: "groups.members",
    method: "POST",
    path: "/api/groups/:group/members",
    action: "admin",
    resource: "none",
    schema: body(["user"], { user: NAME, remove: { type: "boolean" } }, "group"),
    description: "add (or remove) a member",
  },
  {
    id: "grants.list",
    method: "GET",
    path: "/api/grants",
    action: "admin",
    resource: "none",
    schema: { querystring: { type: "object", properties: { kb: NAME } } },
    description: "all grants",
  },
  {
    id: "grants.set",
    method: "POST",
    path: "/api/grants",
    action: "authenticated",
    resource: "none",
    schema: body(["subject", "name", "kb", "permission"], {
      subject: { type: "string", enum: ["user", "group", "key"] },
      name: NAME,
      kb: NAME,
      document: NAME,
      permission: { type: "string", enum: ["read", "write", "manage"] },
      remove: { type: "boolean" },
    }),
    description: "grant or remove a permission (admins, or managers of that knowledge base)",
  },
  {
    id: "audit.list",
    method: "GET",
    path: "/api/audit",
    action: "admin",
    resource: "none",
    schema: {
      querystring: {
        type: "object",
        properties: { limit: { type: "string", pattern: "^[0-9]{1,5}$" }, action: NAME },
      },
    },
    description: "audit log",
  },
  {
    id: "audit.verify",
    method: "GET",
    path: "/api/audit/verify",
    action: "admin",
    resource: "none",
    schema: NONE,
    description: "check the audit hash chain",
  },
] as const;
