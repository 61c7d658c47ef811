// Health and metrics on their own listener, so that a monitoring system can reach them on a port that is never
// exposed to users, while the main port stays behind authentication. Only counters leave through it — no documents,
// names or keys — which is why it needs no credentials of its own; it still binds 127.0.0.1 unless told otherwise.

import { createServer, type Server } from "node:http";
import { DajianError } from "../core/errors.js";

/** Request counters of the main listener, in the Prometheus text format. */
export class ServerMetrics {
  private readonly started = Date.now();
  private readonly byStatus = new Map<string, number>();
  private readonly byRoute = new Map<string, number>();

  /** Record one finished request (status class, and the route id from the route table when one matched). */
  record(status: number, route: string | undefined): void {
    const cls = `${Math.floor(status / 100)}xx`;
    this.byStatus.set(cls, (this.byStatus.get(cls) ?? 0) + 1);
    if (route) this.byRoute.set(route, (this.byRoute.get(route) ?? 0) + 1);
  }

  text(extra: Record<string, number> = {}): string {
    const mem = process.memoryUsage();
    const lines = [
      "# HELP dajian_http_requests_total Requests answered by the main listener, by status class.",
      "# TYPE dajian_http_requests_total counter",
      ...[...this.byStatus].map(([s, n]) => `dajian_http_requests_total{status="${s}"} ${n}`),
      "# HELP dajian_route_requests_total Requests by route id (see the route table).",
      "# TYPE dajian_route_requests_total counter",
      ...[...this.byRoute].map(([r, n]) => `dajian_route_requests_total{route="${r}"} ${n}`),
      "# TYPE dajian_uptime_seconds gauge",
      `dajian_uptime_seconds ${((Date.now() - this.started) / 1000).toFixed(1)}`,
      "# TYPE process_resident_memory_bytes gauge",
      `process_resident_memory_bytes ${mem.rss}`,
      "# TYPE nodejs_heap_used_bytes gauge",
      `nodejs_heap_used_bytes ${mem.heapUsed}`,
      ...Object.entries(extra).flatMap(([k, v]) => [
        `# TYPE ${k} ${k.endsWith("_total") ? "counter" : "gauge"}`,
        `${k} ${v}`,
      ]),
    ];
    return lines.join("\n") + "\n";
  }
}

export interface OpsListener {
  url: string;
  close(): Promise<void>;
}

/** Serve GET /health and GET /metrics on host:port (port 0 = any free port). */
export async function startOpsListener(
  host: string,
  port: number,
  metrics: () => string,
  healthy: () => boolean = () => true,
): Promise<OpsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
    } else if (path === "/health") {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ ok }));
    } else if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(metrics());
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("only /health and /metrics are served here\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new DajianError("busy", `ops port ${port} is in use`, "pick another with --ops-port N")
          : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const real = typeof addr === "object" && addr ? addr.port : port;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${real}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
