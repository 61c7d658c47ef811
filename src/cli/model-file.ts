import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { DajianError } from "../core/errors.js";
import { ModelRegistry } from "../models/registry.js";
import { openHomeDb } from "../store/sqlite.js";
import { homeOf } from "./util.js";

/** A GGUF path as given, else the file of a registered local model (remote API models have no file). */
export function localModelFile(cmd: Command, ref: string): string {
  if (existsSync(ref) && statSync(ref).isFile()) return ref;
  const home = homeOf(cmd);
  const db = openHomeDb(home);
  try {
    const e = new ModelRegistry(db, home).get(ref);
    if (e?.kind === "local") return e.path;
    if (e)
      throw new DajianError(
        "invalid_input",
        `model "${ref}" is a remote API model`,
        "give a local GGUF file or local model name",
      );
  } finally {
    db.close();
  }
  throw new DajianError(
    "not_found",
    `no GGUF file or local model named "${ref}"`,
    "give a path to a .gguf file or a name from `dajian models list`",
  );
}
