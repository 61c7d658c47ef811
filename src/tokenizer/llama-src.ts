// Locate the llama.cpp source that node-llama-cpp ships as a git bundle (test vectors, chat templates, headers).
// Uses DAJIAN_LLAMA_CPP_SRC or /tmp/llama.cpp when present, else clones the bundle once into the temp folder.

import { execFileSync } from "node:child_process";
import { existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DajianError } from "../core/errors.js";

export function llamaCppSourceDir(): string {
  for (const dir of [process.env.DAJIAN_LLAMA_CPP_SRC, "/tmp/llama.cpp"]) {
    if (dir && existsSync(join(dir, "models"))) return dir;
  }
  const req = createRequire(import.meta.url);
  const bundle = join(dirname(req.resolve("node-llama-cpp/package.json")), "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) {
    throw new DajianError("not_found", "llama.cpp source bundle not found", "reinstall node-llama-cpp 3.21.1");
  }
  const dest = join(tmpdir(), "dajian-llama.cpp-src");
  if (existsSync(join(dest, "models"))) return dest;
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  execFileSync("git", ["clone", "--quiet", bundle, tmp], { stdio: "ignore" });
  try {
    renameSync(tmp, dest);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race
  }
  return dest;
}
