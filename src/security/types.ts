// Who is calling, and what they may do. Produced by authentication (API key, session cookie, or the local CLI),
// consumed by every entry point. Permission checks live in src/security; other stages only pass the Principal on.

export type Role = "admin" | "knowledge_manager" | "member" | "api_client";

export type KbAction = "read" | "write" | "manage";

export interface Principal {
  kind: "local" | "user" | "key" | "anonymous";
  /** User id or key id ("local" for the CLI on its own home dir). */
  id: string;
  name: string;
  role: Role;
  groups: string[];
}

/** The local operator running the CLI on their own home dir: full rights, like a DB owner using psql locally. */
export const LOCAL_PRINCIPAL: Principal = { kind: "local", id: "local", name: "local", role: "admin", groups: [] };
