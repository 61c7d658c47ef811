// All state lives under one home directory: --home DIR, else $DAJIAN_HOME, else ~/.dajian.
import { mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

export function resolveHome(explicit?: string): string {
  const dir = explicit ?? process.env.DAJIAN_HOME ?? join(homedir(), ".dajian");
  return resolve(dir);
}

/** Create the home dir layout if missing and return well-known paths inside it. */
export function homePaths(home: string) {
  const p = {
    home,
    config: join(home, "config.json"),
    db: join(home, "dajian.db"),
    files: join(home, "files"), // original uploaded/ingested bytes, by content hash
    models: join(home, "models"),
    runs: join(home, "runs"),
    tmp: join(home, "tmp"),
  };
  return p;
}

export type HomePaths = ReturnType<typeof homePaths>;

export function ensureHome(home: string): HomePaths {
  const p = homePaths(home);
  for (const d of [p.home, p.files, p.models, p.runs, p.tmp]) mkdirSync(d, { recursive: true });
  return p;
}
