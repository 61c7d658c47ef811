// Single sign-on against a REAL OpenID Connect provider (oidc-provider, the certified Node implementation) started
// on 127.0.0.1 in this test. The browser is played by fetch with a cookie jar that follows every redirect by hand:
// dajian → provider (authorization request with PKCE, state, nonce) → provider login/consent → dajian callback
// (code exchange, ID token + userinfo checks) → session cookie. The provider is on loopback, which the outbound
// client refuses by default: one test shows the refusal, the others allow-list 127.0.0.1 explicitly.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Provider from "oidc-provider";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type DajianConfig } from "../core/config.js";
import { closeOutbound } from "../core/outbound.js";
import { Security } from "../security/service.js";
import { LOCAL_PRINCIPAL } from "../security/types.js";
import { createServer } from "./server.js";
import type { RunningServer } from "./testutil.js";

process.env.DAJIAN_SCRYPT_N = "1024";
const SECRET = "test-client-secret-0123456789abcdef";
process.env.DJ_TEST_OIDC_SECRET = SECRET;

/** Accounts at the provider: their claims (groups decide the dajian role). */
const ACCOUNTS: Record<string, Record<string, unknown>> = {
  alice: { preferred_username: "alice", email: "alice@example.test", groups: ["staff", "hr"] },
  root: { preferred_username: "root", email: "root@example.test", groups: ["dajian-admins", "staff"] },
  mallory: { preferred_username: "mallory", email: "mallory@example.test", groups: ["contractors"] },
  carol: { preferred_username: "carol", email: "carol@example.test", groups: ["staff"] },
};
let nextUser = "alice";

let idp: Server;
let issuer = "";
let provider: InstanceType<typeof Provider>;

async function startProvider(redirectUri: string): Promise<void> {
  idp = createHttpServer((req, res) => void route(req, res));
  await new Promise<void>((r) => idp.listen(0, "127.0.0.1", r));
  issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: "dajian",
        client_secret: SECRET,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_post",
      },
    ],
    async findAccount(_ctx, id) {
      return { accountId: id, claims: async () => ({ sub: `sub-${id}`, ...ACCOUNTS[id] }) };
    },
    claims: {
      openid: ["sub"],
      email: ["email"],
      profile: ["preferred_username"],
      groups: ["groups"],
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ["oidc-test-cookie-key"] },
    ttl: { Interaction: 600, Session: 600, Grant: 600, AccessToken: 600, IdToken: 600 },
    pkce: { required: () => true },
  });

  // The provider's login and consent pages, answered at once for `nextUser` (what a person would click).
  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!req.url?.startsWith("/interaction/")) return provider.callback()(req, res);
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === "login") {
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: nextUser } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const grant = new provider.Grant({
      accountId: details.session!.accountId,
      clientId: String(details.params.client_id),
    });
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
}

/** A browser: cookies per host name (like browsers, not per port) with path matching; redirects followed by hand. */
class Browser {
  private readonly jar = new Map<string, { value: string; path: string }>();

  private cookieHeader(url: URL): string {
    return [...this.jar]
      .filter(([, c]) => url.pathname.startsWith(c.path))
      .map(([n, c]) => `${n}=${c.value}`)
      .join("; ");
  }

  private store(res: Response): void {
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(";");
      const i = pair.indexOf("=");
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const path =
        attrs
          .map((a) => a.trim())
          .find((a) => a.toLowerCase().startsWith("path="))
          ?.slice(5) ?? "/";
      const maxAge = attrs.map((a) => a.trim()).find((a) => a.toLowerCase().startsWith("max-age="));
      if (value === "" || maxAge?.toLowerCase() === "max-age=0") this.jar.delete(name);
      else this.jar.set(name, { value, path });
    }
  }

  cookie(name: string): string | undefined {
    return this.jar.get(name)?.value;
  }

  async get(url: string, headers: Record<string, string> = {}): Promise<Response> {
    const u = new URL(url);
    const res = await fetch(u, { redirect: "manual", headers: { ...headers, cookie: this.cookieHeader(u) } });
    this.store(res);
    return res;
  }

  /** Follow redirects until a non-redirect answer or a URL for which `stop` says so; returns the last response. */
  async follow(url: string, stop: (u: URL) => boolean = () => false): Promise<{ res: Response; url: URL }> {
    let u = new URL(url);
    for (let hop = 0; hop < 20; hop++) {
      if (hop > 0 && stop(u)) return { res: new Response(null, { status: 204 }), url: u };
      const res = await this.get(u.href);
      const loc = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !loc) return { res, url: u };
      await res.body?.cancel();
      u = new URL(loc, u);
    }
    throw new Error("redirect loop");
  }
}

const isCallback = (u: URL) => u.pathname === "/api/auth/oidc/callback";

let s: RunningServer;
let home: string;

let dajianPort = 0;

function oidcConfig(port: number, allowLoopback: boolean): DajianConfig {
  return {
    ...DEFAULT_CONFIG,
    server: { ...DEFAULT_CONFIG.server, auth: true },
    outbound: { allowHosts: allowLoopback ? ["127.0.0.1"] : [] },
    security: {
      oidc: {
        issuer,
        clientId: "dajian",
        clientSecretEnv: "DJ_TEST_OIDC_SECRET",
        redirectUri: `http://127.0.0.1:${port}/api/auth/oidc/callback`,
        scopes: ["openid", "email", "profile", "groups"],
        roles: { admin: ["dajian-admins"], member: ["staff"] },
        allowHttp: true,
      },
    },
  } as DajianConfig;
}

/** Sign in as `user` through the provider; returns the browser (with dajian's cookies) and the callback answer. */
async function signIn(user: string): Promise<{ b: Browser; res: Response; callback: URL }> {
  nextUser = user;
  const b = new Browser();
  const { url: callback } = await b.follow(`${s.url}/api/auth/oidc/login`, isCallback);
  expect(callback.pathname, "the provider must send the browser back to the callback").toBe("/api/auth/oidc/callback");
  const res = await b.get(callback.href);
  return { b, res, callback };
}

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Start dajian (auth on, OIDC configured) on `port`. */
async function startDajian(port: number, allowLoopback: boolean): Promise<RunningServer> {
  const server = await createServer({ home, config: oidcConfig(port, allowLoopback), webDir: false });
  const { url } = await server.listen({ host: "127.0.0.1", port });
  return { server, url, home, stop: () => server.close() };
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "dj-oidc-"));
  const sec = Security.open(home, DEFAULT_CONFIG);
  await sec.addUser(LOCAL_PRINCIPAL, "carol", "member", "correct horse battery");
  sec.addGroup(LOCAL_PRINCIPAL, "hr");
  await sec.close();
  dajianPort = await freePort();
  await startProvider(`http://127.0.0.1:${dajianPort}/api/auth/oidc/callback`);
  s = await startDajian(dajianPort, true);
}, 60_000);

afterAll(async () => {
  await s?.stop();
  idp?.close();
  await closeOutbound();
  rmSync(home, { recursive: true, force: true });
});

describe("OIDC single sign-on against a real provider", () => {
  it("signs in through the provider (PKCE, state, nonce) and maps groups to the role and to dajian groups", async () => {
    const b = new Browser();
    nextUser = "alice";
    // The sign-in page offers SSO because the public health route says so.
    expect(((await (await fetch(`${s.url}/api/health`)).json()) as { sso: boolean }).sso).toBe(true);
    const start = await b.get(`${s.url}/api/auth/oidc/login`);
    expect(start.status).toBe(302);
    const auth = new URL(start.headers.get("location")!);
    expect(auth.origin).toBe(issuer);
    expect(auth.searchParams.get("code_challenge_method")).toBe("S256");
    expect(auth.searchParams.get("code_challenge")).toMatch(/^[\w-]{43}$/);
    expect(auth.searchParams.get("state")).toBeTruthy();
    expect(auth.searchParams.get("nonce")).toBeTruthy();
    // the binding cookie: HttpOnly, Lax (it must survive the provider's redirect back), scoped to the OIDC routes
    const binding = start.headers.getSetCookie().find((c) => c.startsWith("dajian_oidc="))!;
    expect(binding).toMatch(/HttpOnly/);
    expect(binding).toMatch(/SameSite=Lax/);
    expect(binding).toMatch(/Path=\/api\/auth\/oidc/);
    expect(b.cookie("dajian_oidc")).toBe(auth.searchParams.get("state"));

    const { url: callback } = await b.follow(auth.href, isCallback);
    expect(callback.pathname).toBe("/api/auth/oidc/callback");
    expect(callback.searchParams.get("code")).toBeTruthy();
    const done = await b.get(callback.href);
    expect(done.status, await done.clone().text()).toBe(302);
    expect(done.headers.get("location")).toBe("/");
    const session = done.headers.getSetCookie().find((c) => c.startsWith("dajian_session="))!;
    expect(session).toMatch(/HttpOnly/);
    expect(session).toMatch(/SameSite=Strict/);
    expect(b.cookie("dajian_oidc")).toBeUndefined(); // single use: cleared

    const me = (await (await b.get(`${s.url}/api/auth/me`)).json()) as { name: string; role: string; groups: string[] };
    expect(me).toMatchObject({ name: "alice", role: "member", groups: ["hr"] });

    // the second sign-in of the same person reuses the linked user; a group change at the provider is applied
    ACCOUNTS.alice.groups = ["staff"];
    const again = await signIn("alice");
    expect(again.res.status).toBe(302);
    const me2 = (await (await again.b.get(`${s.url}/api/auth/me`)).json()) as { name: string; groups: string[] };
    expect(me2).toMatchObject({ name: "alice", groups: [] });
    ACCOUNTS.alice.groups = ["staff", "hr"];

    const admin = await signIn("root");
    expect(admin.res.status).toBe(302);
    const rootMe = (await (await admin.b.get(`${s.url}/api/auth/me`)).json()) as { role: string };
    expect(rootMe.role).toBe("admin");
  });

  it("refuses people outside the allowed groups, and records it", async () => {
    const { b, res } = await signIn("mallory");
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/not in a group allowed/);
    expect(b.cookie("dajian_session")).toBeUndefined();
    const sec = Security.open(home, DEFAULT_CONFIG);
    try {
      const failedLogin = sec.audit.list({ action: "login.failed" }).find((e) => e.target === "user:mallory");
      expect(failedLogin?.detail).toMatchObject({ method: "oidc", reason: "no allowed group or claim" });
      expect(sec.users.row("mallory")).toBeUndefined();
    } finally {
      await sec.close();
    }
  });

  it("a callback is single-use and bound to the browser that started it", async () => {
    nextUser = "alice";
    const b = new Browser();
    const { url: callback } = await b.follow(`${s.url}/api/auth/oidc/login`, isCallback);
    // another browser (an attacker's link) with the same code and state: no binding cookie → refused
    const other = await new Browser().get(callback.href);
    expect(other.status).toBe(401);
    // a forged state in the right browser: refused
    const forged = new URL(callback);
    forged.searchParams.set("state", "x".repeat(43));
    expect((await b.get(forged.href)).status).toBe(401);
    // the real one works once …
    expect((await b.get(callback.href)).status).toBe(302);
    // … and never again (replay)
    const replay = await b.get(callback.href);
    expect(replay.status).toBe(401);
    expect(await replay.text()).toMatch(/already used or has expired|not started in this browser/);
  });

  it("never attaches a provider identity to an existing local account of the same name", async () => {
    const { res } = await signIn("carol"); // local carol exists with a password
    expect(res.status).toBe(401);
    expect(await res.text()).toMatch(/local user named carol already exists/);
  });

  it("the provider on loopback is refused by the outbound client unless allow-listed", async () => {
    await s.stop();
    await closeOutbound();
    s = await startDajian(dajianPort, false);
    const r = await new Browser().get(`${s.url}/api/auth/oidc/login`);
    const text = await r.text();
    expect(r.status, text).toBe(403);
    expect(text).toMatch(/allowHosts|DAJIAN_OUTBOUND_ALLOW/);
    await s.stop();
    s = await startDajian(dajianPort, true);
    expect((await new Browser().get(`${s.url}/api/auth/oidc/login`)).status).toBe(302);
  });

  it("is off by default: the routes answer 404 with the fix", async () => {
    const plain = await createServer({
      home,
      config: { ...DEFAULT_CONFIG, server: { ...DEFAULT_CONFIG.server, auth: true } },
      webDir: false,
    });
    const { url } = await plain.listen({ host: "127.0.0.1", port: 0 });
    try {
      const r = await fetch(`${url}/api/auth/oidc/login`, { redirect: "manual" });
      expect(r.status).toBe(404);
      expect(await r.text()).toMatch(/security\.oidc/);
    } finally {
      await plain.close();
    }
  });
});
