// Optional single sign-on through an OpenID Connect provider (Keycloak, Entra ID, Authentik, Dex, Google …) with
// openid-client: authorization-code flow with PKCE (S256), state and nonce; the provider's groups/claims map to a
// dajian role; the result is the same session cookie a password login gives. Off unless config `security.oidc` is
// set. Every request to the provider goes through the hardened outbound client, so a provider on a private or
// loopback address must be allow-listed in `outbound.allowHosts` like any other internal target.
import { createHash } from "node:crypto";
import * as client from "openid-client";
import type { DajianConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { safeFetch } from "../core/outbound.js";
import { ROLE_RANK, checkName, checkRole } from "./ids.js";
import type { Security } from "./service.js";
import { safeEqual, type Session } from "./sessions.js";
import type { Role } from "./types.js";
import type { User } from "./users.js";

/** Config key `security.oidc`. */
export interface OidcConfig {
  /** Issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  clientId: string;
  /** Name of the env var that holds the client secret (never the secret itself). Default DAJIAN_OIDC_CLIENT_SECRET. */
  clientSecretEnv?: string;
  /** This server's callback as the provider knows it: https://HOST/api/auth/oidc/callback. */
  redirectUri: string;
  /** Default ["openid", "email", "profile"]; add "groups" if the provider needs it to send groups. */
  scopes?: string[];
  /** Claim that names the dajian user. Default preferred_username, then email. */
  usernameClaim?: string;
  /** Claim holding the user's groups (array or string). Default "groups". */
  groupsClaim?: string;
  /**
   * Who may sign in, as what: role → list of provider groups, or "claim:NAME=VALUE" conditions. The highest matching
   * role wins; nobody else may sign in.
   */
  roles: Partial<Record<Role, string[]>>;
  /** Keep the user's memberships in existing dajian groups equal to the provider's groups. Default true. */
  syncGroups?: boolean;
  /** Accept an http:// issuer (a provider on the same host or a test). Default false. */
  allowHttp?: boolean;
}

export const OIDC_CALLBACK_PATH = "/api/auth/oidc/callback";
/** How long a started sign-in may take. */
const FLOW_TTL_MS = 10 * 60_000;
const DEFAULT_SECRET_ENV = "DAJIAN_OIDC_CLIENT_SECRET";
const MAX_PENDING = 10_000;

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

function configError(what: string): never {
  throw new DajianError(
    "invalid_input",
    `config security.oidc: ${what}`,
    'set {"security": {"oidc": {"issuer": "https://…", "clientId": "…", "redirectUri": "https://HOST/api/auth/oidc/callback", "roles": {"member": ["staff"]}}}} and the secret in DAJIAN_OIDC_CLIENT_SECRET',
  );
}

/** The validated OIDC settings, or undefined when OIDC sign-in is not configured. */
export function oidcSettings(config: DajianConfig): OidcConfig | undefined {
  const raw = (config.security as { oidc?: Partial<OidcConfig> & { enabled?: boolean } } | undefined)?.oidc;
  if (!raw || raw.enabled === false) return undefined;
  let issuer: URL;
  try {
    issuer = new URL(String(raw.issuer));
  } catch {
    configError("issuer must be a URL");
  }
  if (issuer.protocol !== "https:" && !(issuer.protocol === "http:" && raw.allowHttp === true))
    configError(`issuer ${issuer.href} is not https (set allowHttp: true only for a provider on a trusted network)`);
  if (typeof raw.clientId !== "string" || !raw.clientId) configError("clientId is missing");
  let redirect: URL;
  try {
    redirect = new URL(String(raw.redirectUri));
  } catch {
    configError("redirectUri must be a URL");
  }
  if (redirect.pathname !== OIDC_CALLBACK_PATH) configError(`redirectUri must end in ${OIDC_CALLBACK_PATH}`);
  const roles: Partial<Record<Role, string[]>> = {};
  for (const [role, list] of Object.entries(raw.roles ?? {})) {
    if (!Array.isArray(list) || list.some((x) => typeof x !== "string" || !x))
      configError(`roles.${role} must be a list`);
    roles[checkRole(role)] = list;
  }
  if (Object.keys(roles).length === 0) configError("roles is empty: nobody could sign in");
  return { ...raw, issuer: issuer.href, clientId: raw.clientId, redirectUri: redirect.href, roles } as OidcConfig;
}

type Claims = Record<string, unknown>;

function groupsOf(claims: Claims, claim: string): string[] {
  const v = claims[claim];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === "string");
  return typeof v === "string" ? [v] : [];
}

/** The highest role whose conditions the claims meet, or null (not allowed to sign in). */
export function roleFor(s: OidcConfig, claims: Claims): Role | null {
  const groups = new Set(groupsOf(claims, s.groupsClaim ?? "groups"));
  let best: Role | null = null;
  for (const [role, conds] of Object.entries(s.roles) as [Role, string[]][]) {
    const hit = conds.some((c) => {
      if (!c.startsWith("claim:")) return groups.has(c);
      const eq = c.indexOf("=");
      const name = c.slice(6, eq > 0 ? eq : undefined);
      const want = eq > 0 ? c.slice(eq + 1) : undefined;
      const v = claims[name];
      const vals = Array.isArray(v) ? v.map(String) : v === undefined || v === null ? [] : [String(v)];
      return want === undefined ? vals.length > 0 : vals.includes(want);
    });
    if (hit && (best === null || ROLE_RANK[role] > ROLE_RANK[best])) best = role;
  }
  return best;
}

/** openid-client wraps what our fetch threw (e.g. the outbound client's refusal): surface that, with its fix. */
function providerError(e: unknown, issuer: string): DajianError {
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++)
    if (c instanceof DajianError) return c;
  return new DajianError(
    "upstream",
    `the OIDC provider ${issuer} answered unexpectedly: ${(e as Error).message}`,
    "check security.oidc.issuer and that the provider is reachable from this server",
    { cause: e },
  );
}

const failed = (why: string, hint = "start again at /api/auth/oidc/login") =>
  new DajianError("unauthorized", `single sign-on failed: ${why}`, hint);

export class OidcLogin {
  private discovered?: Promise<client.Configuration>;
  private readonly takePending;

  constructor(
    private readonly sec: Security,
    readonly settings: OidcConfig,
  ) {
    this.takePending = sec.db.prepare(
      "DELETE FROM sec_oidc_pending WHERE state_hash = ? RETURNING verifier, nonce, expires_at",
    );
  }

  /** Provider metadata (discovered once; retried on the next sign-in if it failed). */
  private configuration(): Promise<client.Configuration> {
    const s = this.settings;
    this.discovered ??= (async () => {
      const secret = process.env[s.clientSecretEnv ?? DEFAULT_SECRET_ENV];
      if (!secret)
        throw new DajianError(
          "invalid_input",
          `the OIDC client secret is not set (env ${s.clientSecretEnv ?? DEFAULT_SECRET_ENV})`,
          `export ${s.clientSecretEnv ?? DEFAULT_SECRET_ENV}=… (the secret the provider issued for client ${s.clientId})`,
        );
      // Every call to the provider goes through the SSRF-hardened client; OAuth endpoints have no business redirecting.
      const fetchVia: client.CustomFetch = (url, o) =>
        safeFetch(url, { ...o, maxRedirects: 0, timeoutMs: 15_000 } as never) as unknown as Promise<Response>;
      const cfg = await client
        .discovery(new URL(s.issuer), s.clientId, undefined, client.ClientSecretPost(secret), {
          [client.customFetch]: fetchVia,
          execute: s.allowHttp ? [client.allowInsecureRequests] : [],
          timeout: 15,
        })
        .catch((e: unknown) => {
          throw providerError(e, s.issuer);
        });
      cfg[client.customFetch] = fetchVia;
      return cfg;
    })();
    this.discovered.catch(() => (this.discovered = undefined));
    return this.discovered;
  }

  /**
   * Start a sign-in: the provider URL to send the browser to, and the state to bind to this browser (a cookie), so a
   * callback opened in another browser (login CSRF) is refused.
   */
  async begin(now = Date.now()): Promise<{ url: string; state: string }> {
    const cfg = await this.configuration();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const verifier = client.randomPKCECodeVerifier();
    this.sec.db.prepare("DELETE FROM sec_oidc_pending WHERE expires_at <= ?").run(now);
    // Unauthenticated callers start flows: bound the table so a flood cannot grow it without limit.
    const open = this.sec.db.prepare("SELECT COUNT(*) FROM sec_oidc_pending").pluck().get() as number;
    if (open >= MAX_PENDING)
      throw new DajianError("rate_limited", "too many sign-ins in progress", "try again in a minute", {
        retryAfter: 60,
      });
    this.sec.db
      .prepare("INSERT INTO sec_oidc_pending (state_hash, verifier, nonce, expires_at) VALUES (?,?,?,?)")
      .run(sha(state), verifier, nonce, now + FLOW_TTL_MS);
    const url = client.buildAuthorizationUrl(cfg, {
      redirect_uri: this.settings.redirectUri,
      scope: (this.settings.scopes ?? ["openid", "email", "profile"]).join(" "),
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
    });
    return { url: url.href, state };
  }

  /** Finish a sign-in from the callback's query string; returns a session for the mapped dajian user. */
  async complete(
    query: URLSearchParams,
    boundState: string | undefined,
    addr: string,
    now = Date.now(),
  ): Promise<{ session: Session; user: User }> {
    const state = query.get("state") ?? "";
    if (!state || !boundState || !safeEqual(state, boundState))
      throw failed("this sign-in was not started in this browser, or it expired");
    const pending = this.takePending.get(sha(state)) as
      { verifier: string; nonce: string; expires_at: number } | undefined;
    if (!pending || pending.expires_at <= now) throw failed("this sign-in link was already used or has expired");
    const err = query.get("error");
    if (err)
      throw failed(
        `the provider said ${err}${query.get("error_description") ? `: ${query.get("error_description")}` : ""}`,
      );
    const cfg = await this.configuration();
    const callback = new URL(this.settings.redirectUri);
    for (const [k, v] of query) callback.searchParams.append(k, v);
    let claims: Claims;
    try {
      const tokens = await client.authorizationCodeGrant(cfg, callback, {
        pkceCodeVerifier: pending.verifier,
        expectedState: state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      const idClaims = tokens.claims()! as Claims;
      // Many providers send groups only from the userinfo endpoint; its subject must match the ID token's.
      const info = cfg.serverMetadata().userinfo_endpoint
        ? ((await client.fetchUserInfo(cfg, tokens.access_token, String(idClaims.sub))) as Claims)
        : {};
      claims = { ...info, ...idClaims };
    } catch (e) {
      const d = providerError(e, this.settings.issuer);
      // The provider refusing the code, a bad ID token signature, nonce or state: a failed sign-in, not a crash.
      throw d.code === "upstream" ? failed((e as Error).message) : d;
    }
    return this.signIn(claims, addr);
  }

  private signIn(claims: Claims, addr: string): { session: Session; user: User } {
    const s = this.settings;
    const sub = String(claims.sub);
    const issuer = s.issuer;
    const nameClaim = s.usernameClaim ?? "preferred_username";
    const name = String(claims[nameClaim] ?? (s.usernameClaim ? "" : (claims.email ?? "")));
    const role = roleFor(s, claims);
    const audit = (ok: boolean, detail: Record<string, unknown>) =>
      this.sec.audit.append({
        actor: ok ? `user:${name}` : `anonymous@${addr}`,
        action: ok ? "login" : "login.failed",
        target: `user:${name}`,
        ok,
        detail: { method: "oidc", issuer, addr, ...detail },
      });
    if (!role) {
      audit(false, { reason: "no allowed group or claim" });
      throw new DajianError(
        "forbidden",
        `${name || sub} is not in a group allowed to use dajian`,
        `ask an admin to add you to one of: ${Object.values(s.roles).flat().join(", ")}`,
      );
    }
    const db = this.sec.db;
    const userId = db.transaction(() => {
      const link = db
        .prepare("SELECT user_id FROM sec_oidc_links WHERE issuer = ? AND subject = ?")
        .get(issuer, sub) as { user_id: string } | undefined;
      if (link) {
        this.sec.users.setRole(link.user_id, role);
        return link.user_id;
      }
      try {
        checkName("user", name);
      } catch {
        throw failed(
          `the provider's ${nameClaim} claim (${JSON.stringify(name)}) is not a usable user name`,
          "set security.oidc.usernameClaim to a claim with a plain name",
        );
      }
      // Never attach a provider identity to an existing local account by name: that would let whoever controls a
      // name at the provider take over the local user (e.g. "admin").
      if (this.sec.users.row(name))
        throw failed(
          `a local user named ${name} already exists`,
          "rename or remove the local user, or sign in with its password",
        );
      const id = this.sec.users.insert(name, role);
      db.prepare("INSERT INTO sec_oidc_links (issuer, subject, user_id, created_at) VALUES (?,?,?,?)").run(
        issuer,
        sub,
        id,
        Date.now(),
      );
      return id;
    })();
    const row = this.sec.users.require(userId);
    if (row.disabled) {
      audit(false, { reason: "user disabled" });
      throw new DajianError("forbidden", `user ${row.name} is disabled`, "ask an admin to enable the account");
    }
    if (s.syncGroups !== false) this.syncGroups(userId, groupsOf(claims, s.groupsClaim ?? "groups"));
    audit(true, { role });
    return { session: this.sec.sessions.create(userId), user: this.sec.users.get(userId) };
  }

  /** Memberships in existing dajian groups follow the provider's groups (groups are never created from claims). */
  private syncGroups(userId: string, groups: string[]): void {
    const want = new Set(groups);
    const user = this.sec.users.require(userId).name;
    const have = new Set(this.sec.users.groupsOf(userId));
    for (const g of this.sec.users.listGroups()) {
      if (want.has(g.name) && !have.has(g.name)) this.sec.users.addMember(g.name, user);
      else if (!want.has(g.name) && have.has(g.name)) this.sec.users.removeMember(g.name, user);
    }
  }
}
