// `dajian serve [--host 127.0.0.1] [--port 8080]`: web page + /api + /v1 in one process (a thin shell over createServer).
import type { Command } from "commander";
import { loadConfig } from "../../core/config.js";
import { DajianError } from "../../core/errors.js";
import { createServer } from "../../server/server.js";
import { action, homeOf, withHome } from "../util.js";

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new DajianError("invalid_input", `invalid port '${v}'`, "use a number from 0 to 65535 (0 = any free port)");
  return n;
}

export function registerServe(program: Command): void {
  withHome(
    program
      .command("serve")
      .description("serve the web chat page, the app API (/api) and the OpenAI-compatible API (/v1)")
      .option("--host <host>", "address to bind (default 127.0.0.1; others need auth)")
      .option("--port <port>", "port (default 8080; 0 = any free port)")
      .option("--ops-port <port>", "also serve GET /health and /metrics on this port (a separate listener)")
      .option("--ops-host <host>", "address of the health/metrics listener (default 127.0.0.1)"),
  ).action(
    action(async (opts: { host?: string; port?: string; opsPort?: string; opsHost?: string }, cmd: Command) => {
      const home = homeOf(cmd);
      const config = loadConfig(home);
      const server = await createServer({ home, config });
      let addr;
      try {
        addr = await server.listen({
          host: opts.host,
          port: opts.port === undefined ? undefined : parsePort(opts.port),
        });
      } catch (err) {
        await server.close();
        const code = (err as { code?: string }).code;
        if (code === "EADDRINUSE")
          throw new DajianError(
            "busy",
            `port ${opts.port ?? config.server.port} is in use`,
            "pick another with --port N",
          );
        throw err;
      }
      if (opts.opsPort !== undefined) {
        const ops = await server.listenOps({ host: opts.opsHost, port: parsePort(opts.opsPort) }).catch(async (err) => {
          await server.close();
          throw err;
        });
        process.stderr.write(`health and metrics on ${ops.url}/health and ${ops.url}/metrics\n`);
      }
      const info = (await server.context.services.models.defaultChat().catch(() => undefined))?.name;
      process.stderr.write(
        `dajian serving on ${addr.url}  (web page /, app API /api, OpenAI API /v1)\n` +
          (info
            ? `model: ${info}\n`
            : "no generative model configured: answers are extractive (quoted passages). " +
              "Add one with `dajian pull …` or `dajian models add …`.\n"),
      );
      const stop = async () => {
        process.stderr.write("dajian: shutting down\n");
        await server.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    }),
  );
}
