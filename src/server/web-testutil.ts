// Shared by the browser tests: the built web page (rebuilt when stale) and real headless Chromium.
// playwright-core and vite are dev dependencies, so they are imported lazily: this module is compiled into dist but
// only tests call it.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Browser } from "playwright-core";
import { defaultWebDir } from "./server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** The built page; rebuilt into a temp dir when web/src is newer than dist/web (a test file run alone after edits).
 * `cleanup` removes that temp dir. */
export async function builtWebDir(): Promise<{ dir: string; cleanup: () => void }> {
  const dir = defaultWebDir();
  const srcDir = resolve(dir, "..", "..", "web", "src");
  const newest = Math.max(...readdirSync(srcDir).map((f) => statSync(join(srcDir, f)).mtimeMs));
  const index = join(dir, "index.html");
  if (existsSync(index) && statSync(index).mtimeMs >= newest) return { dir, cleanup: () => {} };
  const out = mkdtempSync(join(tmpdir(), "dj-web-"));
  const { build } = await import("vite");
  await build({ root: resolve(srcDir, ".."), logLevel: "warn", build: { outDir: out, emptyOutDir: true } });
  return { dir: out, cleanup: () => rmSync(out, { recursive: true, force: true }) };
}

/** Debian's chromium, headless, with everything that would reach the network turned off. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
