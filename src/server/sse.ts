// Server-sent events over the raw Node response: backpressure-aware writes, and an AbortSignal that fires when the
// client goes away, so generation stops and its slot is freed.
import type { FastifyReply } from "fastify";

/** Abort signal for a request: fires on client disconnect (response closed before we ended it) or on timeout. */
export function requestSignal(reply: FastifyReply, timeoutMs: number): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) ac.abort(new Error("client disconnected"));
  };
  res.on("close", onClose);
  const timer = setTimeout(() => ac.abort(new Error("request timed out")), timeoutMs);
  timer.unref();
  return {
    signal: ac.signal,
    dispose() {
      clearTimeout(timer);
      res.off("close", onClose);
    },
  };
}

export interface SseStream {
  /** Send one `data:` frame (JSON-encoded unless a string), optionally with an event name. */
  send(data: unknown, event?: string): Promise<void>;
  end(): void;
  readonly closed: boolean;
}

/** Take over the response and start an event stream (headers are written immediately). */
export function openSse(reply: FastifyReply, extraHeaders: Record<string, string> = {}): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no", // nginx: do not buffer the stream
    "x-content-type-options": "nosniff",
    ...extraHeaders,
  });
  res.flushHeaders();
  let closed = false;
  res.on("close", () => {
    closed = true;
  });
  return {
    get closed() {
      return closed || res.destroyed;
    },
    async send(data, event) {
      if (closed || res.destroyed) return;
      const payload = typeof data === "string" ? data : JSON.stringify(data);
      const frame = (event ? `event: ${event}\n` : "") + `data: ${payload}\n\n`;
      if (!res.write(frame)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
    },
    end() {
      if (!res.writableEnded && !res.destroyed) res.end();
      closed = true;
    },
  };
}
