// Shared by the CLI tests, which run `dajian` as users do: a real process per command.
// Compiled into dist like the rest of src, but only tests import it.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The built CLI (bin/dajian.js → dist; `npm test` builds first, so starts are fast) when dist is at least as new as
 * every source file; otherwise the sources through tsx (slower start, always current). */
function cliArgs(): string[] {
  const tsx = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
  const built = join(ROOT, "dist/cli/main.js");
  if (!existsSync(built)) return tsx;
  const newest = (readdirSync(join(ROOT, "src"), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .reduce((m, f) => Math.max(m, statSync(join(ROOT, "src", f)).mtimeMs), 0);
  return statSync(built).mtimeMs >= newest ? [join(ROOT, "bin/dajian.js")] : tsx;
}

/** Node arguments that start the CLI; append dajian's own arguments. */
export const CLI = cliArgs();

export interface CliResult {
  /** Exit code; 137 when killed by a signal. */
  code: number;
  out: string;
  err: string;
}

/** Start `dajian ARGS` (cwd = repository root, so `--import tsx` resolves). `stdin` is written then closed. */
export function startCli(
  args: string[],
  o: { env?: NodeJS.ProcessEnv; stdin?: string } = {},
): { p: ChildProcess; done: Promise<CliResult> } {
  const p = spawn(process.execPath, [...CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...o.env },
    stdio: [o.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stdout?.on("data", (d) => (out += d));
  p.stderr?.on("data", (d) => (err += d));
  const done = new Promise<CliResult>((res, rej) => {
    p.on("error", rej);
    p.on("close", (code, sig) => res({ code: code ?? (sig ? 137 : -1), out, err }));
  });
  if (o.stdin !== undefined) p.stdin?.end(o.stdin);
  return { p, done };
}

/** Run `dajian ARGS` to completion. */
export const runCli = (args: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<CliResult> =>
  startCli(args, o).done;
