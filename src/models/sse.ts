// Incremental Server-Sent Events parser (the `data:` lines of an OpenAI-style stream). Bounded: a single event
// larger than maxEventBytes is an upstream fault, not something to buffer forever.
import { DajianError } from "../core/errors.js";

export async function* sseEvents(
  body: ReadableStream<Uint8Array>,
  maxEventBytes = 4 * 1024 * 1024,
): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  let data: string[] = [];
  const reader = body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line[5] === " " ? 6 : 5));
        } // comments (":"), event:, id:, retry: carry nothing we use
      }
      if (buf.length > maxEventBytes)
        throw new DajianError("upstream", "provider sent an oversized stream event", "check the provider's base URL");
    }
    // An event not closed by a blank line when the stream ends was cut off: per the SSE spec it is dropped, and
    // the caller sees the stream end without a finish (rather than a misleading "not JSON").
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}
