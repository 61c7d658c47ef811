// `createServer`: one Fastify app serving the web page, the app API (/api) and the OpenAI-compatible API (/v1).
// Every route comes from the route table (routes.ts) and passes the same security pipeline before its handler:
// authenticate → resource → authorize. Errors leave in OpenAI's shape (errors.ts).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyMultipart from "@fastify/multipart";
import fastifyStatic from "@fastify/static";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { loadConfig, type DajianConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { ensureHome } from "../core/home.js";
import { log } from "../core/log.js";
import { apiHandlers } from "./api.js";
import { defaultSecurity, type Resource, type SecurityHooks } from "./auth.js";
import type { Handler, RequestContext, ServerContext } from "./context.js";
import { mapError } from "./errors.js";
import { IngestJobs } from "./jobs.js";
import { ServerMetrics, startOpsListener, type OpsListener } from "./ops.js";
import { v1Handlers } from "./openai.js";
import { ROUTES, type RouteSpec } from "./routes.js";
import { securityHandlers } from "./security-api.js";
import type { ServerServices } from "./services.js";

export interface ServerOptions {
  home: string;
  config?: DajianConfig;
  /** Library services; default: bound to the home dir by adapters.ts. */
  services?: ServerServices;
  /** Security hooks; default: auth.ts `defaultSecurity`. */
  security?: SecurityHooks;
  /** Built web page folder; default dist/web next to the package; false = no page. */
  webDir?: string | false;
  generationTimeoutMs?: number;
}

export interface DajianServer {
  app: FastifyInstance;
  context: ServerContext;
  /** Start listening (port 0 = any free port). Refuses hosts the security hooks forbid. */
  listen(opts?: { host?: string; port?: number }): Promise<{ url: string; host: string; port: number }>;
  /** Health and metrics on a separate listener (default host 127.0.0.1); closed with the server. */
  listenOps(opts: { host?: string; port: number }): Promise<{ url: string }>;
  metrics: ServerMetrics;
  close(): Promise<void>;
}

const HANDLERS: Record<string, Handler | undefined> = { ...v1Handlers, ...apiHandlers, ...securityHandlers };

declare module "fastify" {
  interface FastifyRequest {
    dajian?: RequestContext;
  }
}

/** The package's built web page (dist/web), whether running from src (tsx/vitest) or dist. */
export function defaultWebDir(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  return resolve(here, "..", "..", "dist", "web");
}

/** Check the route table and the handlers agree (no route without a handler, no handler without a route). */
export function checkRouteTable(routes: readonly RouteSpec[] = ROUTES): void {
  const ids = new Set<string>();
  for (const r of routes) {
    if (ids.has(r.id)) throw new Error(`route table: duplicate id ${r.id}`);
    ids.add(r.id);
    if (!HANDLERS[r.id]) throw new Error(`route table: no handler for ${r.id}`);
  }
  for (const id of Object.keys(HANDLERS)) if (!ids.has(id)) throw new Error(`handler ${id} is not in the route table`);
}

/** What a request acts on, from its params/body, for authorization. */
async function resourceOf(route: RouteSpec, req: FastifyRequest, sc: ServerContext): Promise<Resource> {
  const p = (req.params ?? {}) as Record<string, string>;
  switch (route.resource) {
    case "none":
      return { kind: "none" };
    case "kb":
      return { kind: "kb", kb: p.name };
    case "document":
      return { kind: "document", kb: p.name, document: p.doc };
    case "model": {
      const model = p.model ?? (req.body as { model?: string } | undefined)?.model ?? "";
      return model.startsWith("kb:") ? { kind: "model", model, kb: model.slice(3) } : { kind: "model", model };
    }
    case "job":
      return { kind: "job", id: p.id, kb: sc.jobs.get(p.id)?.kb };
    case "conversation": {
      const owner = await sc.services.answers.getConversation(p.id).then(
        (c) => c.owner,
        () => undefined,
      );
      return { kind: "conversation", id: p.id, owner };
    }
  }
}

export async function createServer(opts: ServerOptions): Promise<DajianServer> {
  checkRouteTable();
  const paths = ensureHome(opts.home);
  const config = opts.config ?? loadConfig(opts.home);
  const security = opts.security ?? defaultSecurity(opts.home, config);
  const services = opts.services ?? (await (await import("./adapters.js")).openServices(opts.home, config));
  const uploadDir = join(paths.tmp, "uploads");
  // Resumes the ingest jobs a previous run left unfinished.
  const jobs = new IngestJobs(services.kbs, { uploadDir, recordDir: join(paths.tmp, "ingest-jobs") });
  const sc: ServerContext = {
    home: opts.home,
    config,
    services,
    security,
    jobs,
    uploadDir,
    generationTimeoutMs: opts.generationTimeoutMs ?? 10 * 60_000,
  };

  const app = Fastify({
    logger: false,
    bodyLimit: config.server.maxBodyBytes,
    // The whole request (headers + body, e.g. a big upload) must arrive within 15 min (slow-loris guard). No socket
    // idle timeout: a streamed answer may wait silently in the model queue. Generation has its own timeout.
    requestTimeout: 15 * 60_000,
    connectionTimeout: 0,
    keepAliveTimeout: 5_000,
    return503OnClosing: true,
    forceCloseConnections: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
  });

  // JSON (and multipart on upload routes) only: anything else is a 415 rather than a confusing schema error.
  app.removeContentTypeParser("text/plain");
  await app.register(fastifyMultipart, {
    limits: { fileSize: config.ingest.maxFileBytes, files: 20, fields: 20, fieldSize: 64 * 1024, parts: 40 },
    throwFileSizeLimit: true,
  });

  app.setErrorHandler((err, _req, reply) => {
    const m = mapError(err);
    if (m.retryAfter !== undefined) reply.header("retry-after", String(Math.max(1, Math.ceil(m.retryAfter))));
    reply.code(m.status).send(m.body);
  });

  const metrics = new ServerMetrics();
  app.addHook("onResponse", async (req, reply) => {
    metrics.record(reply.statusCode, req.dajian?.route.id);
  });

  app.addHook("onSend", async (_req, reply, payload) => {
    reply.header("x-content-type-options", "nosniff");
    reply.header("referrer-policy", "no-referrer");
    return payload;
  });

  for (const route of ROUTES as readonly RouteSpec[]) {
    const handler = HANDLERS[route.id]!;
    app.route({
      method: route.method,
      url: route.path,
      schema: route.schema,
      preHandler: async (req) => {
        const principal = await security.authenticate(req, route);
        const resource = await resourceOf(route, req, sc);
        try {
          await security.authorize(principal, route, resource);
        } catch (err) {
          security.audit({ principal, action: "deny", route: route.id, ok: false });
          throw err;
        }
        req.dajian = { principal, route, resource };
      },
      handler: async (req, reply) => handler(req, reply, req.dajian!, sc),
    });
  }

  const webDir = opts.webDir === undefined ? defaultWebDir() : opts.webDir;
  const hasWeb = webDir !== false && existsSync(join(webDir, "index.html"));
  if (hasWeb) {
    await app.register(fastifyStatic, { root: webDir, prefix: "/", index: ["index.html"], wildcard: true });
  } else {
    app.get("/", async (_req, reply) =>
      reply
        .type("text/plain; charset=utf-8")
        .send("dajian: the web page is not built — run `npm run build` (the API is up under /api and /v1)\n"),
    );
  }

  app.setNotFoundHandler((req, reply) => {
    const m = mapError(
      new DajianError("not_found", `no route ${req.method} ${req.url.split("?")[0]}`, "see the API list in the README"),
    );
    reply.code(404).send(m.body);
  });

  let closed = false;
  let ops: OpsListener | undefined;
  const close = async () => {
    if (closed) return;
    closed = true;
    await ops?.close();
    await app.close();
    await jobs.close();
    await services.close();
    await security.close?.();
  };

  return {
    app,
    context: sc,
    async listen(o = {}) {
      const host = o.host ?? config.server.host;
      const port = o.port ?? config.server.port;
      security.checkListen(host);
      await app.listen({ host, port });
      const addr = app.server.address();
      const realPort = typeof addr === "object" && addr ? addr.port : port;
      const shown = host.includes(":") ? `[${host}]` : host;
      log.debug("server listening", { host, port: realPort });
      return { url: `http://${shown}:${realPort}`, host, port: realPort };
    },
    async listenOps(o) {
      ops = await startOpsListener(
        o.host ?? "127.0.0.1",
        o.port,
        () => metrics.text(services.models.stats?.() ?? {}),
        () => !closed,
      );
      return { url: ops.url };
    },
    metrics,
    close,
  };
}
