// Small shared helpers: ids, name validation, role order.
import { randomBytes } from "node:crypto";
import { DajianError } from "../core/errors.js";
import { ROLES, type Role } from "./types.js";

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(8).toString("hex")}`;
}

const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N}._@-]{0,63}$/u;

export function checkName(kind: string, name: string): string {
  if (!NAME_RE.test(name))
    throw new DajianError(
      "invalid_input",
      `invalid ${kind} name ${JSON.stringify(name)}`,
      "use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
    );
  return name;
}

export function checkRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role))
    throw new DajianError("invalid_input", `unknown role ${JSON.stringify(role)}`, `use one of: ${ROLES.join(", ")}`);
  return role as Role;
}

/** Higher = more rights. */
export const ROLE_RANK: Record<Role, number> = { api_client: 0, member: 1, knowledge_manager: 2, admin: 3 };
