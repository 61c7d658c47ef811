// The web chat page in real headless Chromium (Debian `chromium` via playwright-core) against a real server:
// create a knowledge base, upload a document (progress → ready), ask, see the streamed answer, click a citation
// and read the quoted passage; language toggle; extractive-mode notice. Screenshot: /tmp/dajian-web.png.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type RunningServer } from "./testutil.js";
import { builtWebDir, launchChromium } from "./web-testutil.js";

const DOC =
  "# Travel policy\n\nEmployees may book economy class for flights shorter than six hours.\n\n" +
  "## Hotels\n\nHotel costs are reimbursed up to 800 yuan per night in Shanghai and Beijing.\n";

let s: RunningServer;
let browser: Browser;
let web: { dir: string; cleanup: () => void } | undefined;

beforeAll(async () => {
  web = await builtWebDir();
  s = await startTestServer({ webDir: web.dir });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
  web?.cleanup();
});

describe("web chat page", () => {
  it("upload → ask → streamed answer → click citation → passage with document and page", async () => {
    const ctx = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(s.url + "/");
    await expect(page.locator(".brand-sub").textContent()).resolves.toBe("Knowledge assistant");

    // extractive mode is announced with how to add a model
    await expect(page.getByTestId("extractive-notice").textContent()).resolves.toMatch(/dajian pull/);

    await page.fill("#new-kb", "travel");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator(".kb.active", { hasText: "travel" }).waitFor();

    await page.getByTestId("file-input").setInputFiles({
      name: "travel-policy.md",
      mimeType: "text/markdown",
      buffer: Buffer.from(DOC),
    });
    await page.locator(".upload-item.done").waitFor({ timeout: 30_000 });
    await expect(page.locator(".upload-item progress").getAttribute("value")).resolves.toBe("1");
    await page.locator(".doc-list", { hasText: "travel-policy.md" }).waitFor();

    await page.fill("#question", "How much is the hotel reimbursed per night?");
    await page.keyboard.press("Enter");
    const answer = page.getByTestId("answer").last();
    await answer.locator("button.cite").first().waitFor({ timeout: 30_000 });
    expect(await answer.textContent()).toContain("800 yuan");

    await answer.locator("button.cite").first().click();
    const panel = page.getByTestId("citation-panel");
    await panel.waitFor();
    expect(await panel.locator(".quote").textContent()).toContain("800 yuan per night");
    expect(await panel.locator(".meta").textContent()).toContain("travel-policy.md");
    expect(await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe("Close");

    await page.screenshot({ path: "/tmp/dajian-web.png", fullPage: false });

    // language toggle → Chinese UI text, remembered
    await page.getByRole("button", { name: "Switch language" }).click();
    await expect(page.locator(".brand-sub").textContent()).resolves.toBe("知识库助手");
    expect(await page.evaluate(() => document.documentElement.lang)).toBe("zh-CN");
    await page.screenshot({ path: "/tmp/dajian-web-zh.png", fullPage: false });
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it("defaults to Chinese for a Chinese browser", async () => {
    const ctx = await browser.newContext({ locale: "zh-CN" });
    const page = await ctx.newPage();
    await page.goto(s.url + "/");
    await expect(page.locator(".brand-sub").textContent()).resolves.toBe("知识库助手");
    await ctx.close();
  });
});
