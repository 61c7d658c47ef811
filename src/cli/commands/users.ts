// `dajian users …`, `dajian groups …`, `dajian grant …`, `dajian perms`: who may read/write/manage which knowledge
// base (or document), acting as the local operator on the home dir.
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import type { SubjectKind } from "../../security/acl.js";
import { LOCAL_PRINCIPAL } from "../../security/types.js";
import { action, printJson, printTable, withHome } from "../util.js";
import { limitsOf, withLimitOptions, withSecurity, type LimitOpts } from "./keys.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY)
    throw new DajianError(
      "invalid_input",
      "--password-stdin needs the password on standard input",
      'e.g. `printf %s "$PW" | dajian users add NAME --role member --password-stdin`',
    );
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

export function registerUsers(program: Command): void {
  const users = program.command("users").description("users of the web app and owners of keys");

  withHome(
    users
      .command("add <name>")
      .description("add a user")
      .requiredOption("--role <role>", "admin | knowledge_manager | member | api_client")
      .option("--password-stdin", "read a login password from standard input")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, o: { role: string; passwordStdin?: boolean; json?: boolean }, cmd: Command) => {
      const pw = o.passwordStdin ? await readStdin() : undefined;
      const u = await withSecurity(cmd, (sec) => sec.addUser(LOCAL_PRINCIPAL, name, o.role, pw));
      if (o.json) return printJson(u);
      process.stdout.write(`added ${u.name} (${u.role})\n`);
    }),
  );

  withHome(users.command("list").description("list users").option("--json", "print JSON")).action(
    action(async (o: { json?: boolean }, cmd: Command) => {
      const list = await withSecurity(cmd, (sec) => sec.users.list());
      if (o.json) return printJson({ users: list });
      printTable(
        list.map((u) => ({
          name: u.name,
          role: u.role,
          groups: u.groups.join(","),
          login: u.hasPassword ? "yes" : "no",
          disabled: u.disabled ? "yes" : "",
        })),
      );
    }),
  );

  withHome(
    users
      .command("set <name>")
      .description("change a user's role or disable/enable them")
      .option("--role <role>", "new role")
      .option("--disable", "block logins and the user's keys")
      .option("--enable", "allow again")
      .option("--json", "print JSON"),
  ).action(
    action(
      async (name: string, o: { role?: string; disable?: boolean; enable?: boolean; json?: boolean }, cmd: Command) => {
        const u = await withSecurity(cmd, (sec) =>
          sec.updateUser(LOCAL_PRINCIPAL, name, {
            role: o.role,
            disabled: o.disable ? true : o.enable ? false : undefined,
          }),
        );
        if (o.json) return printJson(u);
        process.stdout.write(`${u.name}: ${u.role}${u.disabled ? " (disabled)" : ""}\n`);
      },
    ),
  );

  withHome(
    users
      .command("passwd <name>")
      .description("set a login password (from standard input)")
      .requiredOption("--password-stdin", "read it from standard input"),
  ).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      const pw = await readStdin();
      await withSecurity(cmd, (sec) => sec.setPassword(LOCAL_PRINCIPAL, name, pw));
      process.stdout.write(`password set for ${name}; their sessions were closed\n`);
    }),
  );

  withHome(users.command("rm <name>").description("remove a user, their keys, sessions and grants")).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.removeUser(LOCAL_PRINCIPAL, name));
      process.stdout.write(`removed ${name}\n`);
    }),
  );

  withLimitOptions(
    withHome(users.command("limits <name>").description("set a user's limits (over all their keys and sessions)")),
  ).action(
    action(async (name: string, o: LimitOpts, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.setLimits(LOCAL_PRINCIPAL, { kind: "user", name }, limitsOf(o)));
      process.stdout.write(`limits set for user ${name}\n`);
    }),
  );

  const groups = program.command("groups").description("groups of users (grants and limits apply to all members)");
  withHome(groups.command("add <name>").description("create a group")).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.addGroup(LOCAL_PRINCIPAL, name));
      process.stdout.write(`added group ${name}\n`);
    }),
  );
  withHome(groups.command("list").description("list groups and members").option("--json", "print JSON")).action(
    action(async (o: { json?: boolean }, cmd: Command) => {
      const list = await withSecurity(cmd, (sec) => sec.users.listGroups());
      if (o.json) return printJson({ groups: list });
      printTable(list.map((g) => ({ name: g.name, members: g.members.join(",") })));
    }),
  );
  withHome(groups.command("rm <name>").description("delete a group and its grants")).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.removeGroup(LOCAL_PRINCIPAL, name));
      process.stdout.write(`removed group ${name}\n`);
    }),
  );
  withHome(groups.command("add-member <group> <user>").description("add a user to a group")).action(
    action(async (group: string, user: string, _o: unknown, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.setMembership(LOCAL_PRINCIPAL, group, user, true));
      process.stdout.write(`${user} is in ${group}\n`);
    }),
  );
  withHome(groups.command("rm-member <group> <user>").description("remove a user from a group")).action(
    action(async (group: string, user: string, _o: unknown, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.setMembership(LOCAL_PRINCIPAL, group, user, false));
      process.stdout.write(`${user} left ${group}\n`);
    }),
  );
  withLimitOptions(
    withHome(groups.command("limits <name>").description("set limits shared by all members of a group")),
  ).action(
    action(async (name: string, o: LimitOpts, cmd: Command) => {
      await withSecurity(cmd, (sec) => sec.setLimits(LOCAL_PRINCIPAL, { kind: "group", name }, limitsOf(o)));
      process.stdout.write(`limits set for group ${name}\n`);
    }),
  );

  withHome(
    program
      .command("grant <permission>")
      .description("grant read | write | manage on a knowledge base (or one document: makes it restricted)")
      .requiredOption("--kb <name>", "knowledge base")
      .option("--doc <name>", "one document (name as ingested)")
      .option("--user <name>", "to a user")
      .option("--group <name>", "to a group ('everyone' = all signed-in users and keys)")
      .option("--key <id>", "to an API key")
      .option("--remove", "take the permission away instead")
      .option("--json", "print JSON"),
  ).action(
    action(
      async (
        permission: string,
        o: { kb: string; doc?: string; user?: string; group?: string; key?: string; remove?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const subjects = [
          ["user", o.user],
          ["group", o.group],
          ["key", o.key],
        ].filter(([, v]) => v !== undefined) as [SubjectKind, string][];
        if (subjects.length !== 1)
          throw new DajianError(
            "invalid_input",
            "name exactly one of --user, --group or --key",
            "e.g. `dajian grant read --kb docs --group everyone`",
          );
        const [subject, name] = subjects[0];
        const g = await withSecurity(cmd, (sec) =>
          sec.setGrant(LOCAL_PRINCIPAL, { subject, name, kb: o.kb, document: o.doc, action: permission }, !o.remove),
        );
        if (o.json) return printJson({ ...g, removed: o.remove === true });
        process.stdout.write(
          `${o.remove ? "removed" : "granted"} ${permission} on ${o.kb}${o.doc ? "/" + o.doc : ""} ${o.remove ? "from" : "to"} ${subject} ${name}\n`,
        );
      },
    ),
  );

  withHome(
    program
      .command("perms")
      .description("list grants")
      .option("--kb <name>", "only this knowledge base")
      .option("--json", "print JSON"),
  ).action(
    action(async (o: { kb?: string; json?: boolean }, cmd: Command) => {
      const list = await withSecurity(cmd, (sec) => {
        const names = new Map(sec.users.list().map((u) => [u.id, u.name]));
        return sec.acl.list({ kb: o.kb }).map((g) => ({
          ...g,
          subject: g.subjectKind === "user" ? (names.get(g.subjectId) ?? g.subjectId) : g.subjectId,
        }));
      });
      if (o.json) return printJson({ grants: list });
      printTable(
        list.map((g) => ({
          kb: g.kb,
          document: g.document || "*",
          permission: g.action,
          to: `${g.subjectKind}:${g.subject}`,
        })),
      );
    }),
  );
}
