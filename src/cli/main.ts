#!/usr/bin/env node
// `dajian` command: a thin shell over the library. Each command group registers itself from cli/commands/*.
import { Command } from "commander";
import { VERSION } from "../core/version.js";
import { COMMANDS } from "./commands/index.js";

const program = new Command("dajian")
  .description("搭建 dajian — your own LLM system: knowledge bases, grounded answers, serving, training")
  .version(VERSION)
  .option("--home <dir>", "dajian home dir (default $DAJIAN_HOME or ~/.dajian)")
  .showHelpAfterError("(run with --help for usage)");

for (const register of COMMANDS) register(program);

await program.parseAsync(process.argv);
