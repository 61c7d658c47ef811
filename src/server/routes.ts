// The ONE route table of `dajian serve`. Every HTTP route is declared here with the permission it needs and the kind
// of resource it touches, so the security layer can enforce access generically and its authorization-matrix test can
// enumerate every route. server.ts refuses to start if a handler exists without an entry here, or the reverse.
import type { FastifySchema } from "fastify";
import type { KbAction } from "../security/types.js";
import * as S from "./schemas.js";
import { SECURITY_ROUTES } from "./security-routes.js";

/**
 * What a caller must be allowed to do:
 * - "public": no principal needed (health, static page shell);
 * - "model:use": call a raw model (a `kb:NAME` model also needs "read" on that knowledge base);
 * - "kb:list": list knowledge bases (each result is filtered to what the caller may read);
 * - "kb:create": create a knowledge base;
 * - a KbAction ("read" | "write" | "manage") on the resource's knowledge base;
 * - "conversation:own": the conversation must belong to the caller (or the caller is admin).
 */
// "admin": admin role only; "authenticated": any signed-in caller (the handler narrows further, e.g. own keys).
export type RouteAction =
  "public" | "model:use" | "kb:list" | "kb:create" | "conversation:own" | "admin" | "authenticated" | KbAction;

/** The kind of object a route acts on; `resourceOf` (server.ts) extracts it from params/body. */
export type ResourceKind = "none" | "model" | "kb" | "document" | "conversation" | "job";

export interface RouteSpec {
  /** Stable id, used to bind the handler and in audit logs / test matrices. */
  id: string;
  method: "GET" | "POST" | "DELETE";
  /** Fastify path syntax (":param"). */
  path: string;
  action: RouteAction;
  resource: ResourceKind;
  schema?: FastifySchema;
  /** Response is a stream (SSE or file); the handler writes to the raw socket. */
  streams?: boolean;
  /** Multipart upload route (body parsed by @fastify/multipart, not JSON). */
  multipart?: boolean;
  description: string;
}

export const ROUTES = [
  // OpenAI-compatible
  {
    id: "v1.chat.completions",
    method: "POST",
    path: "/v1/chat/completions",
    action: "model:use",
    resource: "model",
    schema: S.chatCompletionSchema,
    streams: true,
    description: "OpenAI chat completions; model may be `kb:NAME` for grounded answers with citations",
  },
  {
    id: "v1.models.list",
    method: "GET",
    path: "/v1/models",
    action: "model:use",
    resource: "none",
    description: "registered models plus `kb:NAME` for each readable knowledge base",
  },
  {
    id: "v1.models.get",
    method: "GET",
    path: "/v1/models/:model",
    action: "model:use",
    resource: "model",
    schema: S.modelParamSchema,
    description: "one model",
  },
  {
    id: "v1.embeddings",
    method: "POST",
    path: "/v1/embeddings",
    action: "model:use",
    resource: "model",
    schema: S.embeddingsSchema,
    description: "OpenAI embeddings (float or base64)",
  },
  // App API used by the web page
  { id: "api.health", method: "GET", path: "/api/health", action: "public", resource: "none", description: "liveness" },
  {
    id: "api.info",
    method: "GET",
    path: "/api/info",
    action: "kb:list",
    resource: "none",
    description: "server mode (generative/extractive), version, limits",
  },
  {
    id: "api.kbs.list",
    method: "GET",
    path: "/api/kbs",
    action: "kb:list",
    resource: "none",
    description: "knowledge bases",
  },
  {
    id: "api.kbs.create",
    method: "POST",
    path: "/api/kbs",
    action: "kb:create",
    resource: "none",
    schema: S.kbCreateSchema,
    description: "create a knowledge base",
  },
  {
    id: "api.kbs.delete",
    method: "DELETE",
    path: "/api/kbs/:name",
    action: "manage",
    resource: "kb",
    schema: S.kbParamSchema,
    description: "delete a knowledge base",
  },
  {
    id: "api.docs.list",
    method: "GET",
    path: "/api/kbs/:name/documents",
    action: "read",
    resource: "kb",
    schema: S.kbParamSchema,
    description: "documents of a knowledge base",
  },
  {
    id: "api.docs.upload",
    method: "POST",
    path: "/api/kbs/:name/documents",
    action: "write",
    resource: "kb",
    schema: S.kbParamSchema,
    multipart: true,
    description: "multipart upload (streamed to disk, size-limited), then ingest as a job",
  },
  {
    id: "api.docs.delete",
    method: "DELETE",
    path: "/api/kbs/:name/documents/:doc",
    action: "write",
    resource: "document",
    schema: S.docParamSchema,
    description: "remove a document",
  },
  {
    id: "api.docs.download",
    method: "GET",
    path: "/api/kbs/:name/documents/:doc/file",
    action: "read",
    resource: "document",
    schema: S.docParamSchema,
    streams: true,
    description: "download the original file",
  },
  {
    id: "api.search",
    method: "POST",
    path: "/api/kbs/:name/search",
    action: "read",
    resource: "kb",
    schema: S.searchSchema,
    description: "search; same shape as `dajian search --json`",
  },
  {
    id: "api.ask",
    method: "POST",
    path: "/api/kbs/:name/ask",
    action: "read",
    resource: "kb",
    schema: S.askSchema,
    streams: true,
    description: "grounded answer; SSE stream of deltas then the answer with citations (or JSON with stream:false)",
  },
  {
    id: "api.jobs.get",
    method: "GET",
    path: "/api/jobs/:id",
    action: "read",
    resource: "job",
    schema: S.idParamSchema,
    description: "ingest job status (polling)",
  },
  {
    id: "api.jobs.events",
    method: "GET",
    path: "/api/jobs/:id/events",
    action: "read",
    resource: "job",
    schema: S.idParamSchema,
    streams: true,
    description: "ingest job progress as server-sent events",
  },
  {
    id: "api.conversations.list",
    method: "GET",
    path: "/api/conversations",
    action: "conversation:own",
    resource: "none",
    schema: S.conversationListSchema,
    description: "the caller's conversations",
  },
  {
    id: "api.conversations.get",
    method: "GET",
    path: "/api/conversations/:id",
    action: "conversation:own",
    resource: "conversation",
    schema: S.idParamSchema,
    description: "one conversation with its messages",
  },
  {
    id: "api.conversations.delete",
    method: "DELETE",
    path: "/api/conversations/:id",
    action: "conversation:own",
    resource: "conversation",
    schema: S.idParamSchema,
    description: "delete a conversation",
  },
  ...SECURITY_ROUTES,
] as const satisfies readonly RouteSpec[];

export type RouteId = (typeof ROUTES)[number]["id"];

export function routeById(id: RouteId): RouteSpec {
  const r = ROUTES.find((x) => x.id === id);
  if (!r) throw new Error(`no route ${id}`);
  return r;
}
