// Shared helpers for CLI commands: every command accepts --home and prints one-line errors that name the fix.
import type { Command } from "commander";
import { errorLine } from "../core/errors.js";
import { resolveHome } from "../core/home.js";

/** Add the standard --home option to a command. */
export function withHome(cmd: Command): Command {
  return cmd.option("--home <dir>", "dajian home dir (default $DAJIAN_HOME or ~/.dajian)");
}

/** The home dir for a command, honouring --home given to the command or to `dajian` itself. */
export function homeOf(cmd: Command): string {
  const o = cmd.optsWithGlobals() as { home?: string };
  return resolveHome(o.home);
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** Print a simple aligned table (for human output; every listing also has --json). */
export function printTable(rows: Record<string, unknown>[], columns?: string[]): void {
  if (rows.length === 0) return;
  const cols = columns ?? Object.keys(rows[0]);
  const cell = (v: unknown) => (v === undefined || v === null ? "" : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => [...cell(r[c])].length)));
  const line = (vals: string[]) =>
    vals.map((v, i) => v + " ".repeat(Math.max(0, widths[i] - [...v].length))).join("  ");
  process.stdout.write(line(cols.map((c) => c.toUpperCase())) + "\n");
  for (const r of rows) process.stdout.write(line(cols.map((c) => cell(r[c]))) + "\n");
}

/** Wrap an async action so any error becomes one line on stderr and exit code 1. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.stderr.write(`dajian: ${errorLine(err)}\n`);
      if (process.env.DAJIAN_DEBUG) console.error(err);
      process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
    }
  };
}
