// The web page's sign-in screen in real headless Chromium against a real server with auth on: login form, wrong
// password (server message shown), sign in, create a knowledge base + upload + ask through the UI (state-changing
// requests that the server refuses without the CSRF token), account lock-out message, sign out, Chinese form.
// Screenshots: /tmp/dajian-login.png (form with an error) and /tmp/dajian-login-in.png (signed in).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type DajianConfig } from "../core/config.js";
import { Security } from "../security/service.js";
import { LOCAL_PRINCIPAL } from "../security/types.js";
import { startTestServer, type RunningServer } from "./testutil.js";
import { builtWebDir, launchChromium } from "./web-testutil.js";

process.env.DAJIAN_SCRYPT_N = "1024"; // fast hashes for the test; the format is the same
const PW = "a long passphrase for alice";
const DOC = "# Leave\n\nEvery employee has 15 days of paid annual leave per year.\n";

let s: RunningServer;
let browser: Browser;
let home: string;
let web: { dir: string; cleanup: () => void } | undefined;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "dj-login-"));
  const config: DajianConfig = { ...DEFAULT_CONFIG, server: { ...DEFAULT_CONFIG.server, auth: true } };
  const sec = Security.open(home, config);
  await sec.addUser(LOCAL_PRINCIPAL, "alice", "knowledge_manager", PW);
  await sec.addUser(LOCAL_PRINCIPAL, "carol", "member", "carol's own passphrase");
  await sec.close();
  web = await builtWebDir();
  s = await startTestServer({ home, config, webDir: web.dir });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
  rmSync(home, { recursive: true, force: true });
  web?.cleanup();
});

/** Fill and submit the form; resolves with the login response's status once the page has handled it. */
async function signIn(page: Page, name: string, password: string): Promise<number> {
  await page.fill("#login-name", name);
  await page.fill("#login-password", password);
  const res = page.waitForResponse((r) => r.url().endsWith("/api/auth/login"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const status = (await res).status();
  // a failed sign-in clears the password field; a good one replaces the form with the workspace
  if (status !== 200) await expect.poll(() => page.inputValue("#login-password")).toBe("");
  return status;
}

describe("web sign-in (auth on)", () => {
  it("login form → wrong password → sign in → create KB, upload, ask (CSRF) → sign out", async () => {
    const ctx = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(s.url + "/");

    await page.locator("#login-name").waitFor();
    expect(await page.locator("h1").textContent()).toBe("Sign in");
    expect(await page.locator(".sidebar").count()).toBe(0); // nothing of the workspace before signing in
    await page.waitForLoadState("networkidle"); // the page has asked /api/health whether SSO is offered
    expect(await page.getByTestId("sso-link").count()).toBe(0); // no OIDC configured → no SSO link

    expect(await signIn(page, "alice", "not her password")).toBe(401);
    const err = page.getByTestId("login-error");
    await err.waitFor();
    expect(await err.textContent()).toMatch(/wrong user name or password/);
    expect(await page.inputValue("#login-password")).toBe(""); // cleared for the next try
    await page.screenshot({ path: "/tmp/dajian-login.png" });

    expect(await signIn(page, "alice", PW)).toBe(200);
    await page.getByTestId("signed-in-user").waitFor();
    expect(await page.getByTestId("signed-in-user").textContent()).toBe("alice");
    expect(await page.locator("#login-name").count()).toBe(0);

    // The server really refuses a state change without the token, so the UI's success below proves it sends it.
    const bare = await page.evaluate(async () => {
      const r = await fetch("api/kbs", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "no-token" }),
      });
      return { status: r.status, body: await r.text() };
    });
    expect(bare.status).toBe(403);
    expect(bare.body).toMatch(/CSRF/);

    await page.fill("#new-kb", "handbook");
    await page.getByRole("button", { name: "Create" }).click();
    // fail fast with the server's message if the request is refused (e.g. a missing CSRF token)
    await page.locator(".kb.active", { hasText: "handbook" }).or(page.locator(".alert.error")).waitFor();
    expect(await page.locator(".alert.error").count(), await page.locator("body").innerText()).toBe(0);

    await page.getByTestId("file-input").setInputFiles({
      name: "leave.md",
      mimeType: "text/markdown",
      buffer: Buffer.from(DOC),
    });
    await page.locator(".upload-item.done").waitFor({ timeout: 30_000 });
    await page.fill("#question", "How many days of paid annual leave?");
    await page.keyboard.press("Enter");
    const answer = page.getByTestId("answer").last();
    await answer.locator("button.cite").first().waitFor({ timeout: 30_000 });
    expect(await answer.textContent()).toContain("15 days");
    expect(await page.locator(".alert.error").count()).toBe(0);
    await page.screenshot({ path: "/tmp/dajian-login-in.png" });

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("#login-name").waitFor();
    const after = await page.evaluate(async () => (await fetch("api/kbs")).status);
    expect(after).toBe(401); // the session really ended on the server

    // a reload with no session lands on the form again; a signed-in reload would not
    await page.reload();
    await page.locator("#login-name").waitFor();
    expect(errors).toEqual([]);
    await ctx.close();
  }, 90_000);

  it("shows the lock-out message after repeated wrong passwords", async () => {
    const ctx = await browser.newContext({ locale: "en-US" });
    const page = await ctx.newPage();
    await page.goto(s.url + "/");
    await page.locator("#login-name").waitFor();
    for (let i = 0; i < 5; i++) {
      expect(await signIn(page, "carol", `wrong ${i}`)).toBe(401);
      expect(await page.getByTestId("login-error").textContent()).toMatch(/wrong user name or password/);
    }
    // now even the right password is refused, with the server's message and how long to wait
    expect(await signIn(page, "carol", "carol's own passphrase")).toBe(429);
    expect(await page.getByTestId("login-error").textContent()).toMatch(/temporarily locked.*wait \d+ s/);
    expect(await page.getByTestId("signed-in-user").count()).toBe(0);
    await ctx.close();
  }, 60_000);

  it("the form follows the page language (Chinese browser)", async () => {
    const ctx = await browser.newContext({ locale: "zh-CN" });
    const page = await ctx.newPage();
    await page.goto(s.url + "/");
    await page.locator("#login-name").waitFor();
    expect(await page.locator("label[for=login-name]").textContent()).toBe("用户名");
    expect(await page.locator("label[for=login-password]").textContent()).toBe("密码");
    await page.getByRole("button", { name: "切换语言" }).click();
    expect(await page.locator("label[for=login-password]").textContent()).toBe("Password");
    await ctx.close();
  });
});
