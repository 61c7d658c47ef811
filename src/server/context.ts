// Shared types of route handlers: the server-wide context and the per-request one (principal, route, resource).
import type { FastifyReply, FastifyRequest } from "fastify";
import type { DajianConfig } from "../core/config.js";
import type { Principal } from "../security/types.js";
import type { Resource, SecurityHooks } from "./auth.js";
import type { IngestJobs } from "./jobs.js";
import type { RouteId, RouteSpec } from "./routes.js";
import type { ServerServices } from "./services.js";

export interface ServerContext {
  home: string;
  config: DajianConfig;
  services: ServerServices;
  security: SecurityHooks;
  jobs: IngestJobs;
  /** Where uploads are streamed before ingest. */
  uploadDir: string;
  /** Upper bound on one generation (ms); the request is aborted past it. */
  generationTimeoutMs: number;
}

export interface RequestContext {
  principal: Principal;
  route: RouteSpec;
  resource: Resource;
}

export type Handler = (
  req: FastifyRequest,
  reply: FastifyReply,
  rc: RequestContext,
  sc: ServerContext,
) => Promise<unknown>;

export type HandlerTable = Partial<Record<RouteId, Handler>>;
