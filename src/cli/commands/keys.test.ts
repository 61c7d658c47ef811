// The security CLI on a real home dir, as an operator runs it: bootstrap an admin key without a server, add a user
// with a password from stdin, and detect an audit-log edit made directly in SQLite.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../testutil.js";

const home = mkdtempSync(join(tmpdir(), "dj-cli-sec-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

async function dajian(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runCli(["--home", home, ...args], { stdin, env: { DAJIAN_SCRYPT_N: "1024" } });
  return { code: r.code, stdout: r.out, stderr: r.err };
}

describe("dajian keys / users / audit", () => {
  it("bootstraps keys and users on the home dir and verifies the audit chain", { timeout: 180_000 }, async () => {
    const created = await dajian([
      "keys",
      "create",
      "--name",
      "boot",
      "--role",
      "admin",
      "--kb",
      "docs",
      "--rpm",
      "60",
      "--expires",
      "30d",
      "--json",
    ]);
    expect(created.code, created.stderr).toBe(0);
    const k = JSON.parse(created.stdout) as {
      id: string;
      key: string;
      role: string;
      scope: { kbs: string[] };
      limits: { rpm: number };
    };
    expect(k).toMatchObject({ role: "admin", scope: { kbs: ["docs"] }, limits: { rpm: 60 } });
    expect(k.key).toMatch(/^dj_/);

    const user = await dajian(
      ["users", "add", "alice", "--role", "member", "--password-stdin", "--json"],
      "correct horse battery\n",
    );
    expect(user.code, user.stderr).toBe(0);
    expect(JSON.parse(user.stdout)).toMatchObject({ name: "alice", role: "member", hasPassword: true });

    // the key is stored only as a hash
    const db = new Database(join(home, "dajian.db"));
    expect(JSON.stringify(db.prepare("SELECT * FROM sec_keys").all())).not.toContain(k.key);
    db.exec("DROP TRIGGER sec_audit_no_update");
    db.prepare("UPDATE sec_audit SET actor = 'someone-else' WHERE seq = 1").run();
    db.close();

    const verify = await dajian(["audit", "verify", "--json"]);
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.stdout)).toMatchObject({
      ok: false,
      problem: { seq: 1, reason: "entry content was modified" },
    });
    expect(verify.stderr).toBe("");
  });
});
