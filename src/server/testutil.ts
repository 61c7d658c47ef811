// Helpers for the server's tests and benchmark: a temp home, a running server on 127.0.0.1:0 (in-process, or a real
// `dajian serve` child process), SSE reading.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer, type DajianServer, type ServerOptions } from "./server.js";

export interface RunningServer {
  server: DajianServer;
  url: string;
  home: string;
  stop(): Promise<void>;
}

export async function startTestServer(o: Partial<ServerOptions> & { home?: string } = {}): Promise<RunningServer> {
  const home = o.home ?? mkdtempSync(join(tmpdir(), "dj-server-"));
  const server = await createServer({ webDir: false, ...o, home });
  const { url } = await server.listen({ host: "127.0.0.1", port: 0 });
  return {
    server,
    url,
    home,
    async stop() {
      await server.close();
      if (!o.home) rmSync(home, { recursive: true, force: true });
    },
  };
}

export interface SseFrame {
  event: string;
  data: string;
}

/** Read a text/event-stream response frame by frame. */
export async function* readSse(res: Response): AsyncGenerator<SseFrame> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const raw = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message";
        const data: string[] = [];
        for (const line of raw.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

export function jsonPost(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

/** Start `dajian serve --home HOME --port 0` as its own process (through tsx, from the sources); resolves with its
 * URL once it is listening. `nodeArgs` go before the script (e.g. --cpu-prof). */
export async function spawnServe(home: string, nodeArgs: string[] = []): Promise<{ url: string; child: ChildProcess }> {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const child = spawn(
    process.execPath,
    [...nodeArgs, "--import", "tsx", join(root, "src/cli/main.ts"), "serve", "--home", home, "--port", "0"],
    { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, DAJIAN_LOG: "warn" } },
  );
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (b: Buffer) => {
      err += b.toString();
      const m = /serving on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`dajian serve exited (${code}): ${err}`)));
  });
  return { url, child };
}
