// Users, groups, grants, keys, sessions and audit against a real SQLite home dir.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { hashKey, parseExpires } from "./keys.js";
import { hashPassword, verifyPassword } from "./password.js";
import { Security } from "./service.js";
import { LOCAL_PRINCIPAL, type AuthedPrincipal, type Principal } from "./types.js";

process.env.DAJIAN_SCRYPT_N = "1024"; // fast hashes in tests; the default cost has its own test

let home: string;
let sec: Security;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), "dajian-sec-"));
  sec = Security.open(home, DEFAULT_CONFIG, { resolveDocument: (_kb, ref) => [`id-of-${ref}`] });
});
afterEach(async () => {
  await sec.close();
  rmSync(home, { recursive: true, force: true });
});

function errOf(fn: () => unknown): DajianError {
  try {
    fn();
  } catch (e) {
    return e as DajianError;
  }
  throw new Error("expected an error");
}
async function aerrOf(p: Promise<unknown>): Promise<DajianError> {
  try {
    await p;
  } catch (e) {
    return e as DajianError;
  }
  throw new Error("expected an error");
}

async function user(name: string, role = "member", groups: string[] = []): Promise<AuthedPrincipal> {
  const u = await sec.addUser(LOCAL_PRINCIPAL, name, role, "correct horse battery");
  for (const g of groups) sec.setMembership(LOCAL_PRINCIPAL, g, name, true);
  return sec.principalForUser(u.id)!;
}

describe("passwords", () => {
  it("hash with scrypt, per-user salt, verify only the right password", async () => {
    const a = await hashPassword("correct horse battery", { N: 2 ** 15, r: 8, p: 1 });
    const b = await hashPassword("correct horse battery", { N: 2 ** 15, r: 8, p: 1 });
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword("correct horse battery", a)).toBe(true);
    expect(await verifyPassword("correct horse batterY", a)).toBe(false);
    expect(await verifyPassword("x", "garbage")).toBe(false);
  });
});

describe("permissions", () => {
  it("roles, KB grants, groups and the implicit everyone group", async () => {
    sec.addGroup(LOCAL_PRINCIPAL, "hr");
    const alice = await user("alice", "member", ["hr"]);
    const bob = await user("bob", "member");
    const km = await user("kim", "knowledge_manager");
    const admin = await user("root", "admin");
    const kb = { kind: "kb" as const, kb: "company" };
    expect(sec.acl.can(alice, "read", kb)).toBe(false); // closed by default
    expect(sec.acl.can(admin, "manage", kb)).toBe(true);
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "group", name: "everyone", kb: "company", action: "read" }, true);
    expect(sec.acl.can(alice, "read", kb)).toBe(true);
    expect(sec.acl.can(bob, "read", kb)).toBe(true);
    expect(sec.acl.can(bob, "write", kb)).toBe(false);
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "group", name: "hr", kb: "hr-files", action: "write" }, true);
    expect(sec.acl.can(alice, "write", { kind: "kb", kb: "hr-files" })).toBe(true);
    expect(sec.acl.can(alice, "read", { kind: "kb", kb: "hr-files" })).toBe(true); // write implies read
    expect(sec.acl.can(bob, "read", { kind: "kb", kb: "hr-files" })).toBe(false);
    // role ceiling: a member granted manage still cannot manage
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "user", name: "bob", kb: "company", action: "manage" }, true);
    expect(sec.acl.can(bob, "manage", kb)).toBe(false);
    expect(sec.acl.can(bob, "write", kb)).toBe(true);
    // kb:create only for admins and knowledge managers
    expect(sec.acl.can(km, "kb:create")).toBe(true);
    expect(sec.acl.can(bob, "kb:create")).toBe(false);
    sec.onKbCreated(km, "kim-kb");
    expect(sec.acl.can(km, "manage", { kind: "kb", kb: "kim-kb" })).toBe(true);
    // grants may only be given by managers of that KB
    expect(
      errOf(() => sec.setGrant(bob, { subject: "user", name: "bob", kb: "hr-files", action: "read" }, true)).code,
    ).toBe("forbidden");
    sec.setGrant(km, { subject: "user", name: "bob", kb: "kim-kb", action: "read" }, true);
    expect(sec.acl.can(bob, "read", { kind: "kb", kb: "kim-kb" })).toBe(true);
    // deleting a KB drops its grants, so a new KB with the same name starts closed
    sec.onKbDeleted(km, "kim-kb");
    expect(sec.acl.can(bob, "read", { kind: "kb", kb: "kim-kb" })).toBe(false);
    expect(sec.acl.visibleKbs(bob, ["company", "hr-files", "kim-kb"])).toEqual(["company"]);
  });

  it("restricted documents are filtered out of retrieval for everyone not granted", async () => {
    sec.addGroup(LOCAL_PRINCIPAL, "hr");
    const alice = await user("alice", "member", ["hr"]);
    const bob = await user("bob", "member");
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "group", name: "everyone", kb: "company", action: "read" }, true);
    expect(sec.acl.allowDocumentFor(bob, "company")).toBeUndefined(); // nothing restricted yet
    sec.setGrant(
      LOCAL_PRINCIPAL,
      { subject: "group", name: "hr", kb: "company", document: "salaries.xlsx", action: "read" },
      true,
    );
    const bobFilter = sec.acl.allowDocumentFor(bob, "company")!;
    expect(bobFilter("id-of-salaries.xlsx")).toBe(false);
    expect(bobFilter("salaries.xlsx")).toBe(false);
    expect(bobFilter("id-of-handbook.pdf")).toBe(true);
    expect(sec.acl.allowDocumentFor(alice, "company")).toBeUndefined();
    expect(sec.acl.can(bob, "read", { kind: "document", kb: "company", document: "salaries.xlsx" })).toBe(false);
    expect(sec.acl.can(alice, "read", { kind: "document", kb: "company", document: "salaries.xlsx" })).toBe(true);
    // no read on the KB → a filter that admits nothing
    expect(sec.acl.allowDocumentFor(bob, "secret-kb")!("anything")).toBe(false);
    // admin: no filter at all
    expect(sec.acl.allowDocumentFor(LOCAL_PRINCIPAL, "company")).toBeUndefined();
  });
});

describe("API keys", () => {
  it("shown once, stored only as a hash, verified, scoped, revoked and expired", async () => {
    const k = await sec.createKey(LOCAL_PRINCIPAL, {
      name: "ci",
      role: "api_client",
      kbs: ["docs"],
      limits: { rpm: 5 },
    });
    expect(k.key).toMatch(/^dj_[A-Za-z0-9_-]{43}$/);
    const db = new Database(join(home, "dajian.db"), { readonly: true });
    const raw = JSON.stringify(db.prepare("SELECT * FROM sec_keys").all());
    db.close();
    expect(raw).not.toContain(k.key);
    expect(raw).toContain(hashKey(k.key));
    expect(sec.keys.list().map((x) => x.id)).toEqual([k.id]);
    expect(JSON.stringify(sec.keys.list())).not.toContain(k.key);
    const p = sec.principalForKey(k.key)!;
    expect(p).toMatchObject({
      kind: "key",
      id: k.id,
      role: "api_client",
      scope: { kbs: ["docs"] },
      limits: { rpm: 5 },
    });
    expect(sec.acl.can(p, "read", { kind: "kb", kb: "docs" })).toBe(true); // scope implies read for its KBs
    expect(sec.acl.can(p, "write", { kind: "kb", kb: "docs" })).toBe(false);
    expect(sec.acl.can(p, "read", { kind: "kb", kb: "other" })).toBe(false);
    sec.setGrant(LOCAL_PRINCIPAL, { subject: "group", name: "everyone", kb: "other", action: "read" }, true);
    expect(sec.acl.can(p, "read", { kind: "kb", kb: "other" })).toBe(false); // scope narrows grants too
    expect(sec.principalForKey(k.key.slice(0, -1) + (k.key.endsWith("A") ? "B" : "A"))).toBeNull();
    expect(sec.principalForKey("Bearer " + k.key)).toBeNull();
    sec.revokeKey(LOCAL_PRINCIPAL, k.id);
    expect(sec.principalForKey(k.key)).toBeNull();
    const e = await sec.createKey(LOCAL_PRINCIPAL, { name: "short", role: "member", expires: "1m" });
    expect(sec.principalForKey(e.key)).not.toBeNull();
    expect(sec.keys.verify(e.key, Date.now() + 61_000)).toBeNull();
  });

  it("parses expiry forms and rejects bad ones with a fix", () => {
    const now = Date.UTC(2026, 0, 1);
    expect(parseExpires("30d", now)).toBe(now + 30 * 86400e3);
    expect(parseExpires("12h", now)).toBe(now + 12 * 3600e3);
    expect(parseExpires("2027-01-31", now)).toBe(Date.UTC(2027, 0, 31));
    expect(errOf(() => parseExpires("soon", now)).hint).toMatch(/30d/);
    expect(errOf(() => parseExpires("2020-01-01", now)).message).toMatch(/past/);
  });

  it("refuses role-escalating key creation (checklist 9)", async () => {
    const bob = await user("bob", "member");
    const own = await sec.createKey(bob, { name: "mine", role: "member" });
    expect(own.userId).toBe(bob.id);
    expect((await aerrOf(sec.createKey(bob, { name: "x", role: "admin" }))).code).toBe("forbidden");
    expect((await aerrOf(sec.createKey(bob, { name: "x", role: "knowledge_manager" }))).code).toBe("forbidden");
    await user("carol", "member");
    expect((await aerrOf(sec.createKey(bob, { name: "x", role: "member", user: "carol" }))).code).toBe("forbidden");
    const client = sec.principalForKey((await sec.createKey(LOCAL_PRINCIPAL, { name: "c", role: "api_client" })).key)!;
    expect((await aerrOf(sec.createKey(client, { name: "x", role: "api_client" }))).code).toBe("forbidden");
    // a scoped key cannot mint a wider one
    const scoped = sec.principalForKey((await sec.createKey(bob, { name: "s", role: "member", kbs: ["a"] })).key)!;
    expect((await aerrOf(sec.createKey(scoped, { name: "x", role: "member" }))).code).toBe("forbidden");
    expect((await aerrOf(sec.createKey(scoped, { name: "x", role: "member", kbs: ["a", "b"] }))).code).toBe(
      "forbidden",
    );
    await sec.createKey(scoped, { name: "narrow", role: "api_client", kbs: ["a"] });
    // a key never outranks its user after the user is demoted
    const kmUser = await user("kim", "knowledge_manager");
    const kmKey = await sec.createKey(kmUser, { name: "k", role: "knowledge_manager" });
    sec.updateUser(LOCAL_PRINCIPAL, "kim", { role: "member" });
    expect(sec.principalForKey(kmKey.key)!.role).toBe("member");
    sec.updateUser(LOCAL_PRINCIPAL, "kim", { disabled: true });
    expect(sec.principalForKey(kmKey.key)).toBeNull();
    // non-admins only see and revoke their own keys
    expect(sec.listKeys(bob).every((k) => k.userId === bob.id)).toBe(true);
    expect(errOf(() => sec.revokeKey(bob, kmKey.id)).code).toBe("forbidden");
    const denials = sec.audit.list({ action: "deny" });
    expect(denials.length).toBeGreaterThanOrEqual(6);
  });
});

describe("sessions and login", () => {
  it("logs in, throttles per address, locks the account, never says which names exist", async () => {
    await user("alice");
    const ok = await sec.login("alice", "correct horse battery", "10.0.0.1");
    expect(ok.session.token.length).toBeGreaterThan(40);
    expect(sec.principalForSession(ok.session.token)).toMatchObject({
      kind: "user",
      name: "alice",
      session: { csrf: ok.session.csrf },
    });
    const noUser = await aerrOf(sec.login("nobody", "correct horse battery", "10.0.0.2"));
    const badPw = await aerrOf(sec.login("alice", "wrong password!", "10.0.0.2"));
    expect(noUser.message).toBe(badPw.message);
    expect(noUser.code).toBe("unauthorized");
    for (let i = 0; i < 4; i++) await aerrOf(sec.login("alice", "wrong password!", "10.0.0.3")); // 5th failure locks
    const locked = await aerrOf(sec.login("alice", "correct horse battery", "10.0.0.4"));
    expect(locked.code).toBe("rate_limited");
    expect(locked.retryAfter).toBeGreaterThan(0);
    // per-address throttle
    const addr = "10.9.9.9";
    let last: DajianError | undefined;
    for (let i = 0; i < 25; i++) last = await aerrOf(sec.login("ghost", "whatever pw", addr));
    expect(last!.code).toBe("rate_limited");
    sec.logout(sec.principalForSession(ok.session.token)!, ok.session.token);
    expect(sec.principalForSession(ok.session.token)).toBeNull();
    const actions = sec.audit.list({ limit: 1000 }).map((e) => e.action);
    expect(actions).toContain("login");
    expect(actions).toContain("login.failed");
  });
});

describe("audit log", () => {
  it("is hash-chained: editing, deleting or truncating any entry is detected", async () => {
    const p: Principal = LOCAL_PRINCIPAL;
    for (let i = 0; i < 5; i++)
      sec.record(p, "doc.delete", `kb:x/doc${i}`, true, { password: "hunter2", note: `Bearer dj_${"a".repeat(30)}` });
    const entries = sec.audit.list();
    expect(entries).toHaveLength(5);
    expect(JSON.stringify(entries)).not.toContain("hunter2");
    expect(JSON.stringify(entries)).not.toContain("dj_aaaa");
    expect(sec.audit.verify()).toEqual({ ok: true, entries: 5 });
    const db = new Database(join(home, "dajian.db"));
    expect(() => db.prepare("UPDATE sec_audit SET target = 'x' WHERE seq = 2").run()).toThrow(/append-only/);
    db.exec("DROP TRIGGER sec_audit_no_update; DROP TRIGGER sec_audit_no_delete;");
    db.prepare("UPDATE sec_audit SET target = 'kb:x/other' WHERE seq = 3").run();
    expect(sec.audit.verify().problem).toEqual({ seq: 3, reason: "entry content was modified" });
    db.prepare("UPDATE sec_audit SET target = 'kb:x/doc2' WHERE seq = 3").run();
    expect(sec.audit.verify().ok).toBe(true);
    db.prepare("DELETE FROM sec_audit WHERE seq = 2").run();
    expect(sec.audit.verify().problem?.seq).toBe(2);
    const row2 = entries[1];
    db.prepare(
      "INSERT INTO sec_audit (seq, ts, actor, action, target, ok, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
    ).run(
      row2.seq,
      row2.ts,
      row2.actor,
      row2.action,
      row2.target,
      1,
      JSON.stringify(row2.detail),
      row2.prevHash,
      row2.hash,
    );
    expect(sec.audit.verify().ok).toBe(true);
    db.prepare("DELETE FROM sec_audit WHERE seq = 5").run(); // tail truncation: caught by the head anchor
    expect(sec.audit.verify().problem?.reason).toMatch(/end were deleted/);
    db.close();
  });
});

describe("key use on the hot path", () => {
  it("records last use without writing per request; a revocation from another connection applies at once", async () => {
    const k = await sec.createKey(LOCAL_PRINCIPAL, { name: "hot", role: "member" });
    const changes = () => sec.db.prepare("SELECT total_changes()").pluck().get() as number;
    expect(sec.principalForKey(k.key)?.id).toBe(k.id);
    const before = changes();
    for (let i = 0; i < 100; i++) expect(sec.principalForKey(k.key)?.id).toBe(k.id);
    expect(changes()).toBe(before); // 100 authentications, not one write
    expect(sec.keys.get(k.id).lastUsedAt).toBeNull();
    sec.flushKeyUse();
    expect(Date.parse(sec.keys.get(k.id).lastUsedAt!)).toBeGreaterThan(Date.now() - 60_000);

    // the CLI (another connection on the same home dir) revokes it while this one has it cached
    const cli = Security.open(home, DEFAULT_CONFIG);
    try {
      cli.revokeKey(LOCAL_PRINCIPAL, k.id);
    } finally {
      await cli.close();
    }
    expect(sec.principalForKey(k.key)).toBeNull();
  });
});
