// Turning the paths given to `ingest` into named files, with a one-line reason for everything that cannot be
// ingested (missing, unreadable, symlink loops, odd names, devices). Hidden entries (.git, .DS_Store …) inside
// folders are skipped. Document names are POSIX paths: a file's base name, or for a folder argument the path
// relative to the folder's parent ("policies/leave.md"), so re-ingesting the same folder finds the same names.
import { lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { errorLine } from "../core/errors.js";

export interface WalkItem {
  name: string;
  path: string;
  bytes: number;
}

export interface WalkFailure {
  file: string;
  reason: string;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why a document name is unacceptable, or undefined when it is fine (also used for upload names). */
export function badNameReason(name: string): string | undefined {
  if (name === "" || name.length > 1024) return "file name is empty or longer than 1024 characters — rename the file";
  if (CONTROL.test(name)) return "file name contains control characters — rename the file";
  if (name.startsWith("/") || /^[A-Za-z]:[\\/]/.test(name)) return "absolute file name — give a relative name";
  if (name.split(/[\\/]/).some((s) => s === ".." || s === ".")) {
    return "file name contains '../' or './' segments — give a plain relative name";
  }
  return undefined;
}

function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file or folder — check the path";
  if (code === "EACCES" || code === "EPERM") return "permission denied — make it readable for this user";
  if (code === "ELOOP") return "symlink loop — remove or fix the link";
  return errorLine(err);
}

export function walkPaths(paths: string[]): { items: WalkItem[]; failures: WalkFailure[] } {
  const items: WalkItem[] = [];
  const failures: WalkFailure[] = [];
  const seen = new Set<string>();
  const add = (name: string, path: string, bytes: number) => {
    const bad = badNameReason(name);
    if (bad) return failures.push({ file: name, reason: bad });
    if (seen.has(name)) return failures.push({ file: name, reason: "given twice in this batch — ingested once" });
    seen.add(name);
    items.push({ name, path, bytes });
  };

  // `ancestors` holds the real paths of the folders above `dir`: a link back into one of them is a loop.
  const walkDir = (dir: string, base: string, ancestors: Set<string>) => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (err) {
      failures.push({ file: relative(base, dir).split(sep).join("/") || dir, reason: fsReason(err) });
      return;
    }
    for (const e of entries) {
      if (e.startsWith(".")) continue;
      const full = join(dir, e);
      const name = relative(base, full).split(sep).join("/");
      if (CONTROL.test(e)) {
        failures.push({
          file: JSON.stringify(name).slice(1, -1),
          reason: "file name contains control characters — rename the file",
        });
        continue;
      }
      let st;
      try {
        st = statSync(full); // follows links; ELOOP for a link cycle
      } catch (err) {
        failures.push({ file: name, reason: fsReason(err) });
        continue;
      }
      if (st.isDirectory()) {
        let real: string;
        try {
          real = realpathSync(full);
        } catch (err) {
          failures.push({ file: name, reason: fsReason(err) });
          continue;
        }
        if (ancestors.has(real)) {
          failures.push({ file: name, reason: "symlink loop (links back to a parent folder) — skipped" });
          continue;
        }
        walkDir(full, base, new Set([...ancestors, real]));
      } else if (st.isFile()) add(name, full, st.size);
      else failures.push({ file: name, reason: "not a regular file (device, socket or pipe) — skipped" });
    }
  };

  for (const p of paths) {
    const abs = resolve(p);
    if (CONTROL.test(p)) {
      failures.push({ file: JSON.stringify(p).slice(1, -1), reason: "path contains control characters — rename it" });
      continue;
    }
    let st;
    try {
      lstatSync(abs);
      st = statSync(abs);
    } catch (err) {
      failures.push({ file: p, reason: fsReason(err) });
      continue;
    }
    if (st.isDirectory()) {
      let real: string;
      try {
        real = realpathSync(abs);
      } catch (err) {
        failures.push({ file: p, reason: fsReason(err) });
        continue;
      }
      walkDir(abs, dirname(abs), new Set([real]));
    } else if (st.isFile()) add(basename(abs), abs, st.size);
    else failures.push({ file: p, reason: "not a regular file (device, socket or pipe) — skipped" });
  }
  return { items, failures };
}
