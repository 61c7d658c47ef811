// `dajian audit list|verify`: read and check the hash-chained audit log of a home dir.
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { action, printJson, printTable, withHome } from "../util.js";
import { intOpt, withSecurity } from "./keys.js";

export function registerAudit(program: Command): void {
  const audit = program.command("audit").description("the append-only, hash-chained audit log");
  withHome(
    audit
      .command("list")
      .description("recent entries (oldest first)")
      .option("--limit <n>", "how many (default 100)")
      .option("--action <name>", "only this action, e.g. login.failed, deny, key.create")
      .option("--json", "print JSON"),
  ).action(
    action(async (o: { limit?: string; action?: string; json?: boolean }, cmd: Command) => {
      const entries = await withSecurity(cmd, (sec) =>
        sec.audit.list({ limit: intOpt("limit", o.limit) ?? 100, action: o.action }),
      );
      if (o.json) return printJson({ entries });
      printTable(
        entries.map((e) => ({
          seq: e.seq,
          time: new Date(e.ts).toISOString(),
          actor: e.actor,
          action: e.action,
          target: e.target,
          ok: e.ok ? "ok" : "FAIL",
        })),
      );
    }),
  );
  withHome(
    audit
      .command("verify")
      .description("recompute the hash chain; exit 1 if any entry was edited or deleted")
      .option("--json", "print JSON"),
  ).action(
    action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withSecurity(cmd, (sec) => sec.audit.verify());
      if (o.json) printJson(r);
      else if (r.ok) process.stdout.write(`audit log intact: ${r.entries} entries\n`);
      if (!r.ok) {
        if (o.json) process.exitCode = 1;
        else
          throw new DajianError(
            "corrupt",
            `audit log tampered at entry ${r.problem!.seq}: ${r.problem!.reason}`,
            "restore the database from a backup and investigate who had write access to it",
          );
      }
    }),
  );
}
