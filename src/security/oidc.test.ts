// OIDC settings validation and the groups/claims → role mapping (the full sign-in flow against a real provider is
// in src/server/oidc.test.ts).
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type DajianConfig } from "../core/config.js";
import { oidcSettings, roleFor, type OidcConfig } from "./oidc.js";

const base = {
  issuer: "https://login.example.com/realms/acme",
  clientId: "dajian",
  redirectUri: "https://dajian.example.com/api/auth/oidc/callback",
  roles: { member: ["staff"] },
};
const withOidc = (oidc: unknown): DajianConfig => ({ ...DEFAULT_CONFIG, security: { oidc } }) as DajianConfig;

describe("OIDC settings", () => {
  it("is off unless configured, and validates what is", () => {
    expect(oidcSettings(DEFAULT_CONFIG)).toBeUndefined();
    expect(oidcSettings(withOidc({ ...base, enabled: false }))).toBeUndefined();
    expect(oidcSettings(withOidc(base))?.issuer).toBe(base.issuer);
    expect(() => oidcSettings(withOidc({ ...base, issuer: "http://login.example.com" }))).toThrow(/not https/);
    expect(oidcSettings(withOidc({ ...base, issuer: "http://127.0.0.1:9", allowHttp: true }))?.allowHttp).toBe(true);
    expect(() => oidcSettings(withOidc({ ...base, clientId: "" }))).toThrow(/clientId/);
    expect(() => oidcSettings(withOidc({ ...base, redirectUri: "https://x/cb" }))).toThrow(
      /\/api\/auth\/oidc\/callback/,
    );
    expect(() => oidcSettings(withOidc({ ...base, roles: {} }))).toThrow(/nobody could sign in/);
    expect(() => oidcSettings(withOidc({ ...base, roles: { root: ["x"] } }))).toThrow(/unknown role/);
  });
});

describe("groups and claims → role", () => {
  const s: OidcConfig = {
    ...base,
    roles: {
      admin: ["dajian-admins"],
      knowledge_manager: ["claim:department=docs"],
      member: ["staff", "claim:email_verified=true"],
      api_client: ["claim:robot"],
    },
  };
  it("takes the highest matching role; no match means no sign-in", () => {
    expect(roleFor(s, { groups: ["staff", "dajian-admins"] })).toBe("admin");
    expect(roleFor(s, { groups: "staff" })).toBe("member");
    expect(roleFor(s, { groups: [], email_verified: true })).toBe("member");
    expect(roleFor(s, { email_verified: false })).toBeNull();
    expect(roleFor(s, { department: ["sales", "docs"], groups: ["staff"] })).toBe("knowledge_manager");
    expect(roleFor(s, { robot: "yes" })).toBe("api_client"); // claim present, any value
    expect(roleFor(s, { groups: ["Staff", "dajian-admins-old"] })).toBeNull(); // exact names only
    expect(roleFor({ ...s, groupsClaim: "roles" }, { roles: ["dajian-admins"], groups: [] })).toBe("admin");
  });
});
