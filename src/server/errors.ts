// Every error leaves the server in OpenAI's shape {error:{message,type,param,code}} (on /v1 and /api alike), with the
// right status, a message that names the fix, and Retry-After on 429/503. Nothing internal (stack, paths) leaks.
import type { FastifyError } from "fastify";
import { DajianError, type ErrorCode } from "../core/errors.js";
import { log } from "../core/log.js";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null; hint?: string };
}

/** A DajianError that also carries OpenAI's `param` and `code` fields. */
export class ApiError extends DajianError {
  readonly param: string | null;
  readonly apiCode: string;
  constructor(
    code: ErrorCode,
    message: string,
    hint: string,
    opts: { param?: string; apiCode?: string; retryAfter?: number } = {},
  ) {
    super(code, message, hint, { retryAfter: opts.retryAfter });
    this.param = opts.param ?? null;
    this.apiCode = opts.apiCode ?? code;
  }
}

export function modelNotFound(model: string): ApiError {
  return new ApiError(
    "not_found",
    `The model \`${model}\` does not exist`,
    "list models with GET /v1/models (or `dajian models list`); knowledge bases are `kb:NAME`",
    { param: "model", apiCode: "model_not_found" },
  );
}

function typeFor(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "invalid_request_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

export interface MappedError {
  status: number;
  body: OpenAIErrorBody;
  retryAfter?: number;
}

function body(status: number, message: string, code: string | null, param: string | null = null, hint?: string) {
  return { error: { message, type: typeFor(status), param, code, ...(hint ? { hint } : {}) } };
}

/** Turn anything thrown (DajianError, Fastify validation/parse errors, bugs) into a status + OpenAI error body. */
export function mapError(err: unknown): MappedError {
  if (err instanceof DajianError) {
    const param = err instanceof ApiError ? err.param : null;
    const code = err instanceof ApiError ? err.apiCode : err.code;
    const b = body(err.status, err.oneLine(), code, param, err.hint || undefined);
    return { status: err.status, body: b, retryAfter: err.retryAfter };
  }
  const fe = err as FastifyError & { validation?: { instancePath?: string; params?: Record<string, unknown> }[] };
  if (fe && Array.isArray(fe.validation)) {
    const v = fe.validation[0];
    const path = (v?.instancePath ?? "").replace(/^\//, "").replace(/\//g, ".");
    const missing = v?.params && typeof v.params.missingProperty === "string" ? v.params.missingProperty : undefined;
    const param = missing ? (path ? `${path}.${missing}` : missing) : path || null;
    const msg = `invalid request: ${fe.message}`;
    return {
      status: 400,
      body: body(400, `${msg} — fix the field and retry (see the API docs)`, "invalid_request", param),
    };
  }
  const code = fe?.code;
  if (code === "FST_ERR_CTP_BODY_TOO_LARGE" || fe?.statusCode === 413)
    return {
      status: 413,
      body: body(413, "request body too large — send less, or raise server.maxBodyBytes in config.json", "too_large"),
    };
  if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" || fe?.statusCode === 415)
    return {
      status: 415,
      body: body(415, "unsupported content type — send JSON (content-type: application/json)", "unsupported"),
    };
  if (code === "FST_ERR_CTP_EMPTY_JSON_BODY")
    return { status: 400, body: body(400, "empty JSON body — send a JSON object", "invalid_json") };
  if (
    fe instanceof SyntaxError ||
    code === "FST_ERR_CTP_INVALID_JSON_BODY" ||
    code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH"
  )
    return { status: 400, body: body(400, `malformed JSON body (${fe.message}) — send valid JSON`, "invalid_json") };
  if (typeof fe?.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500)
    return { status: fe.statusCode, body: body(fe.statusCode, fe.message, code ?? null) };
  log.error("server: unexpected error", { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return { status: 500, body: body(500, "internal server error — see the server log", "internal") };
}
