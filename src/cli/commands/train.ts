// `dajian train`: a from-scratch llama model on text/JSONL files, or `--resume RUN` of an interrupted run.
// A thin shell over src/train/run: progress and log lines on stderr (silent with --json), the summary on stdout.
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { homePaths } from "../../core/home.js";
import { terminalProgress, type ProgressEvent, type ProgressFn } from "../../core/progress.js";
import { parseBytes } from "../../train/run/preflight.js";
import { PRESETS } from "../../train/run/presets.js";
import { RUN_FILE, resumeRun, startRun, type TrainSummary } from "../../train/run/run.js";
import type { LlamaFileType } from "../../train/llama-gguf.js";
import { action, homeOf, printJson, withHome } from "../util.js";

/** Parse a numeric option: a whole number ≥ min (default 1), or with `real` any number above 0. */
function num(flag: string, o: { min?: number; real?: boolean } = {}) {
  return (v: string): number => {
    const n = Number(v);
    const ok = o.real ? n > 0 && Number.isFinite(n) : Number.isInteger(n) && n >= (o.min ?? 1);
    if (v.trim() === "" || !ok) {
      const want = o.real ? "a positive number" : `an integer ≥ ${o.min ?? 1}`;
      throw new DajianError("invalid_input", `${flag} must be ${want}, got '${v}'`, `pass e.g. ${flag} 4`);
    }
    return n;
  };
}
const int = (flag: string, min = 1) => num(flag, { min });
const pos = (flag: string) => num(flag, { real: true });

/** One terminal bar per phase (tokenizer, tokenize, steps), so each shows its own rate and ETA. */
function phasedProgress(): ProgressFn & { end(): void } {
  let phase = "";
  let bar: ReturnType<typeof terminalProgress> | null = null;
  const fn = ((e: ProgressEvent) => {
    if (e.phase !== phase) {
      bar?.end();
      bar = terminalProgress();
      phase = e.phase;
    }
    bar?.(e);
  }) as ProgressFn & { end(): void };
  fn.end = () => bar?.end();
  return fn;
}

interface TrainOpts {
  data?: string[];
  out?: string;
  preset: string;
  resume?: string;
  runDir?: string;
  json?: boolean;
  [k: string]: unknown;
}

export function registerTrain(program: Command): void {
  withHome(
    program
      .command("train")
      .description("train a llama model from scratch on text/JSONL files and export it as GGUF")
      .option("--data <files...>", "training text: .txt/.md (paragraphs) or .jsonl (a 'text' field per line)")
      .option("--out <model.gguf>", "where to write the trained model")
      .option("--preset <name>", `model size: ${Object.keys(PRESETS).join(", ")}`, "tiny")
      .option("--vocab <n>", "tokenizer vocabulary size", int("--vocab", 260))
      .option("--layers <n>", "transformer blocks", int("--layers"))
      .option("--dim <n>", "model width", int("--dim"))
      .option("--heads <n>", "attention heads", int("--heads"))
      .option("--kv-heads <n>", "key/value heads (grouped-query attention)", int("--kv-heads"))
      .option("--ffn <n>", "SwiGLU hidden size", int("--ffn"))
      .option("--seq <n>", "sequence length (also the model's context length)", int("--seq", 2))
      .option("--batch <n>", "sequences per micro-batch", int("--batch"))
      .option("--steps <n>", "stop after N optimizer steps (default 1000)", int("--steps"))
      .option("--tokens <n>", "stop after N training tokens", int("--tokens"))
      .option(
        "--minutes <n>",
        "stop after N minutes of training (schedule sized from the measured speed)",
        pos("--minutes"),
      )
      .option("--lr <x>", "peak learning rate (default per preset)", pos("--lr"))
      .option("--min-lr <x>", "final learning rate of the cosine decay (default lr/10)", pos("--min-lr"))
      .option("--warmup <n>", "linear warm-up steps (default 5% of the run, ≤ 100)", int("--warmup", 0))
      .option("--accum <n>", "micro-batches per optimizer step", int("--accum"))
      .option("--clip <x>", "clip the global gradient norm (0 = off)", Number)
      .option("--weight-decay <x>", "AdamW weight decay (default 0.1)", Number)
      .option("--seed <n>", "seed for initialisation, data split and batch order", int("--seed", 0))
      .option("--threads <n>", "CPU threads", int("--threads"))
      .option("--val-every <n>", "validate every N steps (default ~10× per run)", int("--val-every"))
      .option("--val-batches <n>", "micro-batches per validation (default 4)", int("--val-batches"))
      .option("--val-fraction <x>", "share of documents held out (default 0.05)", pos("--val-fraction"))
      .option(
        "--checkpoint-every <n>",
        "checkpoint every N steps (default: at each validation)",
        int("--checkpoint-every"),
      )
      .option("--type <type>", "exported tensor type: F32, F16, Q8_0, Q4_0", "F32")
      .option("--tokenizer <model.gguf>", "reuse this model's tokenizer instead of learning one")
      .option(
        "--tokenizer-sample-mb <n>",
        "MB of training text the tokenizer learns from (default 4)",
        pos("--tokenizer-sample-mb"),
      )
      .option("--max-memory <size>", "memory ceiling for the pre-flight check, e.g. 8GiB (default: available RAM)")
      .option("--name <name>", "model name written into the GGUF")
      .option("--run-dir <dir>", "run folder for checkpoints and metrics (default HOME/runs/<out>-<time>)")
      .option("--resume <run>", "continue an interrupted run (its folder, or its name under HOME/runs)")
      .option("--json", "print only a JSON summary (last line)"),
  ).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts() as TrainOpts;
      const quiet = Boolean(o.json);
      const bar = quiet ? null : phasedProgress();
      const hooks = {
        // A log line leaves the progress bar's line first.
        log: bar ? (line: string) => (bar.end(), process.stderr.write(`${line}\n`)) : undefined,
        onProgress: bar ?? undefined,
      };
      const maxMemory = typeof o.maxMemory === "string" ? parseBytes(o.maxMemory) : undefined;
      let summary: TrainSummary;
      try {
        if (o.resume) {
          const dir = existsSync(join(o.resume, RUN_FILE)) ? o.resume : join(homePaths(homeOf(cmd)).runs, o.resume);
          const steps = o.steps as number | undefined;
          summary = await resumeRun(dir, { threads: o.threads as number, out: o.out, maxMemory, steps }, hooks);
        } else {
          if (!o.data?.length)
            throw new DajianError("invalid_input", "no training data", "pass --data FILE… (text or JSONL files)");
          if (!o.out) throw new DajianError("invalid_input", "no output model", "pass --out MODEL.gguf");
          const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
          const runDir = o.runDir ?? join(homePaths(homeOf(cmd)).runs, `${basename(o.out, ".gguf")}-${stamp}`);
          summary = await startRun(
            {
              data: o.data,
              out: o.out,
              runDir,
              preset: o.preset,
              shape: {
                vocab: o.vocab as number,
                layers: o.layers as number,
                dim: o.dim as number,
                heads: o.heads as number,
                kvHeads: o.kvHeads as number,
                ffn: o.ffn as number,
                seq: o.seq as number,
                batch: o.batch as number,
              },
              seed: o.seed as number,
              stop: { steps: o.steps as number, tokens: o.tokens as number, minutes: o.minutes as number },
              lr: o.lr as number,
              minLr: o.minLr as number,
              warmup: o.warmup as number,
              accum: o.accum as number,
              clip: o.clip as number,
              weightDecay: o.weightDecay as number,
              threads: o.threads as number,
              valEvery: o.valEvery as number,
              valBatches: o.valBatches as number,
              valFraction: o.valFraction as number,
              checkpointEvery: o.checkpointEvery as number,
              type: String(o.type).toUpperCase() as LlamaFileType,
              tokenizer: o.tokenizer as string | undefined,
              tokenizerSampleBytes:
                o.tokenizerSampleMb === undefined ? undefined : Math.round((o.tokenizerSampleMb as number) * 1e6),
              maxMemory,
              name: o.name as string | undefined,
            },
            hooks,
          );
        }
      } finally {
        bar?.end();
      }
      if (quiet) return printJson(summary);
      process.stdout.write(
        `trained ${summary.steps} steps (${summary.tokens} tokens, ${summary.tokensPerSecond.toFixed(0)} tokens/s): ` +
          `train loss ${summary.trainLoss.toFixed(4)}, validation loss ${summary.valLoss.toFixed(4)} ` +
          `(perplexity ${summary.valPerplexity.toFixed(2)})\nmodel ${summary.out}\nrun ${summary.runDir}\n`,
      );
    }),
  );
}
