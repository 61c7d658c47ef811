// Registry of CLI command groups; each module adds its commands to the program.
import type { Command } from "commander";

export type RegisterCommands = (program: Command) => void;

export const COMMANDS: RegisterCommands[] = [];
