// `dajian keys create|list|revoke`: API keys, managed directly on the home dir (bootstrap the first admin key
// without a server). The secret is printed once.
import type { Command } from "commander";
import { loadConfig } from "../../core/config.js";
import { DajianError } from "../../core/errors.js";
import { Security } from "../../security/service.js";
import { LOCAL_PRINCIPAL, type Limits } from "../../security/types.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function intOpt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new DajianError("invalid_input", `--${name} must be a whole number ≥ 0, got '${v}'`, `e.g. --${name} 60`);
  return n;
}

export interface LimitOpts {
  rpm?: string;
  tpm?: string;
  maxConcurrent?: string;
  dailyTokens?: string;
  monthlyTokens?: string;
}

export function withLimitOptions(cmd: Command): Command {
  return cmd
    .option("--rpm <n>", "requests per minute")
    .option("--tpm <n>", "tokens per minute (prompt + max_tokens reserved per call)")
    .option("--max-concurrent <n>", "concurrent model calls")
    .option("--daily-tokens <n>", "token budget per UTC day")
    .option("--monthly-tokens <n>", "token budget per UTC month");
}

export function limitsOf(o: LimitOpts): Limits {
  const l: Limits = {
    rpm: intOpt("rpm", o.rpm),
    tpm: intOpt("tpm", o.tpm),
    maxConcurrent: intOpt("max-concurrent", o.maxConcurrent),
    dailyTokens: intOpt("daily-tokens", o.dailyTokens),
    monthlyTokens: intOpt("monthly-tokens", o.monthlyTokens),
  };
  for (const k of Object.keys(l) as (keyof Limits)[]) if (l[k] === undefined) delete l[k];
  return l;
}

/** Open the security layer of a home dir for one CLI command, then close it. */
export async function withSecurity<T>(cmd: Command, fn: (sec: Security) => Promise<T> | T): Promise<T> {
  const home = homeOf(cmd);
  const config = loadConfig(home);
  // The CLI never needs shared counters; keep it off Redis so admin commands work while Redis is down.
  const sec = Security.open(home, { ...config, redisUrl: undefined });
  try {
    return await fn(sec);
  } finally {
    await sec.close();
  }
}

export function registerKeys(program: Command): void {
  const keys = program.command("keys").description("API keys: create (shown once), list, revoke");

  withLimitOptions(
    withHome(
      keys
        .command("create")
        .description("create an API key; prints the secret once")
        .requiredOption("--name <name>", "a label for the key")
        .requiredOption("--role <role>", "admin | knowledge_manager | member | api_client")
        .option(
          "--kb <name>",
          "restrict to this knowledge base (repeatable); also grants the role's use of it",
          collect,
        )
        .option("--model <name>", "restrict to this model (repeatable)", collect)
        .option("--route <id>", "restrict to this route id or prefix like 'v1.*' (repeatable)", collect)
        .option("--user <name>", "the key acts for this user (at most the user's rights)")
        .option("--expires <when>", "30d, 12h, 1y or an ISO date")
        .option("--json", "print JSON"),
    ),
  ).action(
    action(
      async (
        o: LimitOpts & {
          name: string;
          role: string;
          kb?: string[];
          model?: string[];
          route?: string[];
          user?: string;
          expires?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const k = await withSecurity(cmd, (sec) =>
          sec.createKey(LOCAL_PRINCIPAL, {
            name: o.name,
            role: o.role,
            kbs: o.kb,
            models: o.model,
            routes: o.route,
            user: o.user,
            expires: o.expires,
            limits: limitsOf(o),
          }),
        );
        if (o.json) return printJson(k);
        process.stdout.write(`${k.key}\n`);
        process.stderr.write(`key ${k.id} (${k.role}) created — store the secret now, it is not shown again\n`);
      },
    ),
  );

  withHome(
    keys
      .command("list")
      .description("list keys (never the secrets)")
      .option("--all", "include revoked keys")
      .option("--json", "print JSON"),
  ).action(
    action(async (o: { all?: boolean; json?: boolean }, cmd: Command) => {
      const list = await withSecurity(cmd, (sec) => sec.keys.list({ includeRevoked: o.all === true }));
      if (o.json) return printJson({ keys: list });
      printTable(
        list.map((k) => ({
          id: k.id,
          name: k.name,
          role: k.role,
          prefix: k.prefix + "…",
          kbs: k.scope.kbs?.join(",") ?? "*",
          expires: k.expiresAt ?? "never",
          revoked: k.revokedAt ?? "",
        })),
      );
    }),
  );

  withHome(
    keys
      .command("revoke <id>")
      .description("revoke a key (takes effect on the next request)")
      .option("--json", "print JSON"),
  ).action(
    action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const k = await withSecurity(cmd, (sec) => sec.revokeKey(LOCAL_PRINCIPAL, id));
      if (o.json) return printJson(k);
      process.stdout.write(`revoked ${k.id} (${k.name})\n`);
    }),
  );
}
