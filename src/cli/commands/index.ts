// Registry of CLI command groups; each module adds its commands to the program.
import type { Command } from "commander";
import { registerServe } from "./serve.js";
import { registerKeys } from "./keys.js";
import { registerUsers } from "./users.js";
import { registerAudit } from "./audit.js";
import { registerKb } from "./kb.js";
import { registerEvalRetrieval } from "./eval-retrieval.js";
import { registerPrepare } from "./prepare.js";
import { registerModels } from "./models.js";
import { registerAsk } from "./ask.js";
import { registerConvert } from "./convert.js";
import { registerData } from "./data.js";
import { registerFinetuneCommands } from "./finetune.js";
import { registerTrain } from "./train.js";

export type RegisterCommands = (program: Command) => void;

export const COMMANDS: RegisterCommands[] = [
  registerServe,
  registerKeys,
  registerUsers,
  registerAudit,
  registerKb,
  registerEvalRetrieval,
  registerModels,
  registerAsk,
  registerPrepare,
  registerConvert,
  registerData,
  registerFinetuneCommands,
  registerTrain,
];
