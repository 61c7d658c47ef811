// Every error a user can see says what went wrong *and* what to do about it (the `hint`).
// `code` is stable and machine-readable; `status` maps onto HTTP when the error crosses the server.

export type ErrorCode =
  | "not_found"
  | "already_exists"
  | "invalid_input"
  | "unsupported"
  | "too_large"
  | "corrupt"
  | "forbidden"
  | "unauthorized"
  | "rate_limited"
  | "busy"
  | "upstream"
  | "interrupted"
  | "internal";

const STATUS: Record<ErrorCode, number> = {
  not_found: 404,
  already_exists: 409,
  invalid_input: 400,
  unsupported: 415,
  too_large: 413,
  corrupt: 422,
  forbidden: 403,
  unauthorized: 401,
  rate_limited: 429,
  busy: 503,
  upstream: 502,
  interrupted: 499, // stopped on request (Ctrl-C, SIGTERM, an abort signal); the work can be resumed
  internal: 500,
};

export class DajianError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly status: number;
  /** Seconds a client should wait before retrying (429/503). */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message: string, hint: string, opts: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "DajianError";
    this.code = code;
    this.hint = hint;
    this.status = STATUS[code];
    this.retryAfter = opts.retryAfter;
  }

  /** One line: "message — hint". */
  oneLine(): string {
    return this.hint ? `${this.message} — ${this.hint}` : this.message;
  }
}

/** Render any thrown value as a single line fit for a summary table or a log. */
export function errorLine(err: unknown): string {
  if (err instanceof DajianError) return err.oneLine();
  if (err instanceof Error) return err.message.split("\n")[0];
  return String(err).split("\n")[0];
}

export function isDajianError(err: unknown, code?: ErrorCode): err is DajianError {
  return err instanceof DajianError && (code === undefined || err.code === code);
}
