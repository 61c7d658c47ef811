// Users and groups. Group "everyone" is implicit: every authenticated principal is in it (grants to it = open KB).
import { DajianError } from "../core/errors.js";
import type { SqliteDb } from "../store/sqlite.js";
import { checkName, checkRole, newId } from "./ids.js";
import { checkPasswordStrength, hashPassword } from "./password.js";
import type { Role } from "./types.js";

export const EVERYONE = "everyone";

export interface User {
  id: string;
  name: string;
  role: Role;
  disabled: boolean;
  hasPassword: boolean;
  groups: string[];
  createdAt: string;
}

interface UserRow {
  id: string;
  name: string;
  role: Role;
  password_hash: string | null;
  disabled: number;
  failed_logins: number;
  locked_until: number | null;
  created_at: number;
}

export class Users {
  constructor(private readonly db: SqliteDb) {}

  row(nameOrId: string): UserRow | undefined {
    return this.db.prepare("SELECT * FROM sec_users WHERE name = ? OR id = ?").get(nameOrId, nameOrId) as
      UserRow | undefined;
  }

  require(nameOrId: string): UserRow {
    const r = this.row(nameOrId);
    if (!r) throw new DajianError("not_found", `no user ${JSON.stringify(nameOrId)}`, "see `dajian users list`");
    return r;
  }

  groupsOf(userId: string): string[] {
    return this.db
      .prepare(
        "SELECT g.name FROM sec_group_members m JOIN sec_groups g ON g.id = m.group_id WHERE m.user_id = ? ORDER BY g.name",
      )
      .pluck()
      .all(userId) as string[];
  }

  private toUser(r: UserRow): User {
    return {
      id: r.id,
      name: r.name,
      role: r.role,
      disabled: r.disabled === 1,
      hasPassword: r.password_hash !== null,
      groups: this.groupsOf(r.id),
      createdAt: new Date(r.created_at).toISOString(),
    };
  }

  async add(name: string, role: string, password?: string): Promise<User> {
    checkName("user", name);
    const rl = checkRole(role);
    if (this.row(name))
      throw new DajianError("already_exists", `user ${name} exists`, "pick another name or `dajian users rm` it");
    if (password !== undefined) checkPasswordStrength(password);
    const hash = password === undefined ? null : await hashPassword(password);
    return this.toUser(this.require(this.insert(name, rl, hash)));
  }

  /** Insert a user row (synchronous, for use inside transactions); returns the new id. */
  insert(name: string, role: Role, passwordHash: string | null = null): string {
    checkName("user", name);
    const id = newId("usr");
    this.db
      .prepare("INSERT INTO sec_users (id, name, role, password_hash, created_at) VALUES (?,?,?,?,?)")
      .run(id, name, role, passwordHash, Date.now());
    return id;
  }

  list(): User[] {
    return (this.db.prepare("SELECT * FROM sec_users ORDER BY name").all() as UserRow[]).map((r) => this.toUser(r));
  }

  get(nameOrId: string): User {
    return this.toUser(this.require(nameOrId));
  }

  async setPassword(nameOrId: string, password: string): Promise<void> {
    const u = this.require(nameOrId);
    checkPasswordStrength(password);
    const hash = await hashPassword(password);
    this.db.transaction(() => {
      this.db
        .prepare("UPDATE sec_users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE id = ?")
        .run(hash, u.id);
      this.db.prepare("DELETE FROM sec_sessions WHERE user_id = ?").run(u.id); // a new password ends old sessions
    })();
  }

  setRole(nameOrId: string, role: string): void {
    const u = this.require(nameOrId);
    this.db.prepare("UPDATE sec_users SET role = ? WHERE id = ?").run(checkRole(role), u.id);
  }

  setDisabled(nameOrId: string, disabled: boolean): void {
    const u = this.require(nameOrId);
    this.db.transaction(() => {
      this.db.prepare("UPDATE sec_users SET disabled = ? WHERE id = ?").run(disabled ? 1 : 0, u.id);
      if (disabled) this.db.prepare("DELETE FROM sec_sessions WHERE user_id = ?").run(u.id);
    })();
  }

  remove(nameOrId: string): void {
    const u = this.require(nameOrId);
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM sec_grants WHERE subject_kind = 'user' AND subject_id = ?").run(u.id);
      this.db.prepare("DELETE FROM sec_limits WHERE subject_kind = 'user' AND subject_id = ?").run(u.id);
      this.db.prepare("DELETE FROM sec_users WHERE id = ?").run(u.id); // keys and sessions cascade
    })();
  }

  // ---- groups ----

  addGroup(name: string): { id: string; name: string } {
    checkName("group", name);
    if (name === EVERYONE)
      throw new DajianError("invalid_input", `"${EVERYONE}" is built in`, "grant to it directly; it needs no members");
    if (this.db.prepare("SELECT 1 FROM sec_groups WHERE name = ?").get(name))
      throw new DajianError("already_exists", `group ${name} exists`, "pick another name");
    const id = newId("grp");
    this.db.prepare("INSERT INTO sec_groups (id, name, created_at) VALUES (?,?,?)").run(id, name, Date.now());
    return { id, name };
  }

  private group(name: string): { id: string; name: string } {
    const g = this.db.prepare("SELECT id, name FROM sec_groups WHERE name = ?").get(name) as
      { id: string; name: string } | undefined;
    if (!g) throw new DajianError("not_found", `no group ${JSON.stringify(name)}`, "see `dajian groups list`");
    return g;
  }

  removeGroup(name: string): void {
    const g = this.group(name);
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM sec_grants WHERE subject_kind = 'group' AND subject_id = ?").run(g.name);
      this.db.prepare("DELETE FROM sec_limits WHERE subject_kind = 'group' AND subject_id = ?").run(g.name);
      this.db.prepare("DELETE FROM sec_groups WHERE id = ?").run(g.id);
    })();
  }

  addMember(group: string, user: string): void {
    const g = this.group(group);
    const u = this.require(user);
    this.db.prepare("INSERT OR IGNORE INTO sec_group_members (group_id, user_id) VALUES (?,?)").run(g.id, u.id);
  }

  removeMember(group: string, user: string): void {
    const g = this.group(group);
    const u = this.require(user);
    this.db.prepare("DELETE FROM sec_group_members WHERE group_id = ? AND user_id = ?").run(g.id, u.id);
  }

  listGroups(): { name: string; members: string[] }[] {
    const groups = this.db.prepare("SELECT id, name FROM sec_groups ORDER BY name").all() as {
      id: string;
      name: string;
    }[];
    const members = this.db.prepare(
      "SELECT u.name FROM sec_group_members m JOIN sec_users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.name",
    );
    return groups.map((g) => ({ name: g.name, members: members.pluck().all(g.id) as string[] }));
  }
}
