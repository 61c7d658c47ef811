// `dajian finetune` (LoRA on a GGUF base), `dajian merge`, `dajian eval qa` and `dajian data preview`: thin shells
// over src/train/lora and src/data/sft.ts. Progress on stderr; results on stdout (`--json`: one summary line last).
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { ensureHome } from "../../core/home.js";
import { terminalProgress } from "../../core/progress.js";
import { ChatFormatter, loadSftDataset } from "../../data/sft.js";
import { readSftExamples, type SftExample } from "../../data/sft-read.js";
import { Engine } from "../../engine/index.js";
import { parseQuantType, quantizeModel } from "../../models/quantize.js";
import { qaReportLines, scoreQa, writeQaReport } from "../../train/lora/eval-qa.js";
import { mergeAdapter } from "../../train/lora/merge.js";
import { DEFAULT_SETTINGS, finetune, LORA_RUN_FILE, type FinetunePlan } from "../../train/lora/run.js";
import { parseTargets } from "../../train/lora/trainer.js";
import { action, homeOf, printJson, withHome } from "../util.js";
import { dataGroup } from "./data.js";
import { evalGroup } from "./eval-retrieval.js";

function num(flag: string, o: { int?: boolean; min?: number } = {}) {
  return (v: string): number => {
    const n = Number(v);
    if (
      v.trim() === "" ||
      !Number.isFinite(n) ||
      (o.int && !Number.isInteger(n)) ||
      (o.min !== undefined && n < o.min)
    ) {
      throw new DajianError(
        "invalid_input",
        `${flag} must be ${o.int ? "an integer" : "a number"}${o.min !== undefined ? ` ≥ ${o.min}` : ""}, got '${v}'`,
        `pass e.g. ${flag} ${Math.max(1, o.min ?? 1)}`,
      );
    }
    return n;
  };
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;

function planLine(p: FinetunePlan): string {
  const e = p.estimate;
  const t = p.secondsEstimate;
  const time = t < 90 ? `${Math.round(t)} s` : t < 5400 ? `${Math.round(t / 60)} min` : `${(t / 3600).toFixed(1)} h`;
  return (
    `pre-flight: ${p.trainRows} train / ${p.valRows} validation examples, seq ${p.seq}, ${p.totalSteps} steps · ` +
    `${(e.loraParams / 1e6).toFixed(3)}M LoRA parameters on a ${gib(e.baseBytes)} frozen base · ` +
    `memory ≈ ${gib(e.residentBytes)} of ${gib(p.availableBytes)} available` +
    `${p.recomputeFfn ? " (FFN activations recomputed in the backward)" : " (FFN activations kept)"} · time ≈ ${time} (nominal FLOP rate)`
  );
}

async function readExamples(files: string[]): Promise<SftExample[]> {
  const out: SftExample[] = [];
  for (const file of files) {
    for await (const e of readSftExamples(file)) {
      if ("error" in e) process.stderr.write(`dajian: skipped ${e.source}: ${e.error}\n`);
      else out.push(e);
    }
  }
  if (!out.length) throw new DajianError("invalid_input", "no usable example in --data", "check the file format");
  return out;
}

interface FinetuneOpts {
  base?: string;
  data: string[];
  out?: string;
  run?: string;
  resume?: string;
  rank: number;
  alpha?: number;
  dropout: number;
  targets: string;
  epochs?: number;
  steps?: number;
  lr: number;
  batch: number;
  accum: number;
  maxLen: number;
  valSplit: number;
  seed: number;
  checkpointEvery?: number;
  threads?: number;
  includePrompt?: boolean;
  recomputeFfn?: boolean;
  template?: string;
  json?: boolean;
}

function registerFinetune(program: Command): void {
  withHome(
    program
      .command("finetune")
      .description("LoRA fine-tuning of a GGUF model (base frozen in its stored type; only adapter A/B train)")
      .option("--base <model.gguf>", "base model (llama family; F32, F16, Q8_0, Q4_0 and K-quants)")
      .requiredOption("--data <files...>", "alpaca / messages / ShareGPT JSONL, JSON, CSV or XLSX Q&A")
      .option("--out <adapter.gguf>", "adapter GGUF to write")
      .option("--run <dir>", "run folder (checkpoints, metrics.jsonl, loss-curve.html); default under ~/.dajian/runs")
      .option(
        "--resume <run>",
        "continue an interrupted run from its last checkpoint (its folder, or name under HOME/runs)",
      )
      .option("--rank <n>", "LoRA rank", num("--rank", { int: true, min: 1 }), 8)
      .option("--alpha <x>", "LoRA alpha (default 2 × rank)", num("--alpha", { min: 0 }))
      .option("--dropout <p>", "dropout on the adapter input", num("--dropout", { min: 0 }), 0)
      .option("--targets <list>", "projections to adapt", "q,k,v,o,gate,up,down")
      .option("--epochs <n>", "passes over the training examples (default 3)", num("--epochs", { min: 0 }))
      .option("--steps <n>", "optimizer steps (instead of --epochs)", num("--steps", { int: true, min: 1 }))
      .option("--lr <x>", "peak learning rate", num("--lr"), DEFAULT_SETTINGS.lr)
      .option("--batch <n>", "sequences per micro-batch", num("--batch", { int: true, min: 1 }), DEFAULT_SETTINGS.batch)
      .option("--accum <n>", "micro-batches per step", num("--accum", { int: true, min: 1 }), DEFAULT_SETTINGS.accum)
      .option(
        "--max-len <n>",
        "longest example in tokens",
        num("--max-len", { int: true, min: 2 }),
        DEFAULT_SETTINGS.maxLen,
      )
      .option(
        "--val-split <f>",
        "fraction held out for validation",
        num("--val-split", { min: 0 }),
        DEFAULT_SETTINGS.valSplit,
      )
      .option("--seed <n>", "seed for init, split and order", num("--seed", { int: true }), DEFAULT_SETTINGS.seed)
      .option(
        "--checkpoint-every <n>",
        "steps between checkpoints and validations",
        num("--checkpoint-every", { int: true, min: 1 }),
      )
      .option("--threads <n>", "CPU threads", num("--threads", { int: true, min: 1 }))
      .option(
        "--no-recompute-ffn",
        "keep the FFN activations for the backward pass instead of recomputing them: ~20 % faster steps for about a sixth more memory at rank 64 (default: recompute)",
      )
      .option("--include-prompt", "also train on prompt tokens (default: assistant tokens + EOS only)")
      .option("--template <jinja|chatml>", "chat template instead of the base's own")
      .option("--json", "print a JSON summary as the last line"),
  ).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts() as FinetuneOpts;
      if (o.epochs !== undefined && o.steps !== undefined)
        throw new DajianError("invalid_input", "--epochs and --steps both given", "pass only one of them");
      const home = ensureHome(homeOf(cmd));
      let runDir: string;
      if (o.resume) {
        runDir = existsSync(o.resume) ? resolve(o.resume) : join(home.runs, o.resume);
        if (!existsSync(join(runDir, LORA_RUN_FILE)))
          throw new DajianError("not_found", `${runDir} holds no fine-tuning run`, "check --run");
      } else {
        if (!o.base || !o.out)
          throw new DajianError(
            "invalid_input",
            "--base and --out are required",
            "pass --base MODEL.gguf --out ADAPTER.gguf",
          );
        runDir = resolve(o.run ?? join(home.runs, `lora-${new Date().toISOString().replace(/[:.]/g, "-")}`));
      }
      const settings = o.resume
        ? null
        : {
            ...DEFAULT_SETTINGS,
            base: o.base as string,
            out: o.out as string,
            lora: {
              rank: o.rank,
              alpha: o.alpha ?? 2 * o.rank,
              dropout: o.dropout,
              targets: parseTargets(o.targets),
              recomputeFfn: o.recomputeFfn,
            },
            lr: o.lr,
            batch: o.batch,
            accum: o.accum,
            maxLen: o.maxLen,
            epochs: o.epochs,
            steps: o.steps,
            valSplit: o.valSplit,
            seed: o.seed,
            checkpointEvery: o.checkpointEvery,
          };
      const base = settings
        ? settings.base
        : (JSON.parse(readFileSync(join(runDir, LORA_RUN_FILE), "utf8")) as { settings: { base: string } }).settings
            .base;
      const f = ChatFormatter.fromGguf(base, o.template);
      const data = await loadSftDataset(o.data, f, {
        includePrompt: o.includePrompt,
        maxLen: o.maxLen,
        overflow: "truncate",
      });
      for (const e of data.report.errors) process.stderr.write(`dajian: skipped ${e.source}: ${e.error}\n`);
      if (!data.samples.length)
        throw new DajianError("invalid_input", "no usable example in --data", "check the file format");
      const engine = new Engine({ threads: o.threads });
      const bar = terminalProgress();
      const ctrl = new AbortController();
      const stop = () => ctrl.abort();
      process.once("SIGINT", stop);
      try {
        const s = await finetune(engine, runDir, data.samples, settings, {
          progress: bar,
          signal: ctrl.signal,
          onPlan: (p) => process.stderr.write(`${planLine(p)}\nengine: ${engine.describe()}\n`),
        });
        bar.end();
        if (o.json) printJson(s);
        else {
          process.stdout.write(
            `adapter ${s.adapter} (${s.params} parameters, base ${s.baseType}) after ${s.steps} steps, ` +
              `${Math.round(s.tokensPerSecond)} tokens/s\n` +
              `train loss ${s.trainLossBefore.toFixed(4)} → ${s.trainLossAfter.toFixed(4)}` +
              (s.valLossBefore !== null
                ? ` · validation loss ${s.valLossBefore.toFixed(4)} → ${s.valLossAfter?.toFixed(4)}`
                : "") +
              `\nrun folder ${s.runDir} (metrics.jsonl, loss-curve.html)\n`,
          );
        }
      } finally {
        process.off("SIGINT", stop);
      }
    }),
  );
}

function registerMerge(program: Command): void {
  withHome(
    program
      .command("merge")
      .description("merge a LoRA adapter into its base model (optionally quantize the result)")
      .requiredOption("--base <model.gguf>", "base model")
      .requiredOption("--adapter <adapter.gguf>", "LoRA adapter trained on that base")
      .requiredOption("--out <merged.gguf>", "merged model to write")
      .option("--scale <x>", "adapter scale", num("--scale"), 1)
      .option("--quantize <type>", "quantize the merged model (Q8_0, Q4_0, Q4_K_M …) with llama.cpp")
      .option("--force", "overwrite --out")
      .option("--json", "print JSON"),
  ).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        base: string;
        adapter: string;
        out: string;
        scale: number;
        quantize?: string;
        force?: boolean;
        json?: boolean;
      };
      const out = resolve(o.out);
      if (existsSync(out) && !o.force)
        throw new DajianError("already_exists", `${out} already exists`, "choose another --out or pass --force");
      const type = o.quantize ? parseQuantType(o.quantize) : undefined;
      const engine = new Engine();
      const target = type ? `${out}.merge-f32-${process.pid}` : out;
      try {
        const m = mergeAdapter(engine, o.base, o.adapter, target, { scale: o.scale, dequantizeAll: Boolean(type) });
        let bytes = m.bytes;
        if (type) {
          const bar = terminalProgress();
          const q = await quantizeModel(target, out, { type, onProgress: bar, overwrite: Boolean(o.force) });
          bar.end();
          bytes = q.sizeAfter;
        }
        const res = { out, bytes, merged: m.merged, rank: m.rank, alpha: m.alpha, quantize: type ?? null };
        if (o.json) printJson(res);
        else
          process.stdout.write(
            `merged ${m.merged} matrices (r=${m.rank}, alpha=${m.alpha}) into ${out}${type ? ` (${type})` : ""}\n`,
          );
      } finally {
        if (type) rmSync(target, { force: true });
      }
    }),
  );
}

function registerEvalQa(program: Command): void {
  withHome(
    evalGroup(program)
      .command("qa <model>")
      .description("answer loss, exact match and answer-contained on held-out Q&A, base vs base + adapter (llama.cpp)")
      .requiredOption("--data <files...>", "held-out Q&A (same formats as finetune --data)")
      .option("--adapter <adapter.gguf>", "LoRA adapter; the report shows base and base + adapter side by side")
      .option("--run <dir>", "fine-tuning run folder whose loss curve goes into the report")
      .option("--report <file.html>", "write an HTML report (table, answers, loss curve)")
      .option("--max-tokens <n>", "answer length limit", num("--max-tokens", { int: true, min: 1 }), 48)
      .option("--template <jinja|chatml>", "chat template instead of the model's own")
      .option("--json", "print JSON"),
  ).action(
    action(async (model: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        data: string[];
        adapter?: string;
        run?: string;
        report?: string;
        maxTokens: number;
        template?: string;
        json?: boolean;
      };
      const f = ChatFormatter.fromGguf(model, o.template);
      const examples = await readExamples(o.data);
      const bar = terminalProgress();
      const before = await scoreQa(model, undefined, examples, f, { maxTokens: o.maxTokens, progress: bar });
      const after = o.adapter
        ? await scoreQa(model, o.adapter, examples, f, { maxTokens: o.maxTokens, progress: bar })
        : undefined;
      bar.end();
      if (o.report) writeQaReport(resolve(o.report), before, after, o.run ? join(o.run, "loss-curve.html") : undefined);
      if (o.json) printJson({ before, after: after ?? null });
      else {
        process.stdout.write(qaReportLines(before, after).join("\n") + "\n");
        if (o.report) process.stdout.write(`report ${resolve(o.report)}\n`);
      }
    }),
  );
}

function registerDataPreview(program: Command): void {
  dataGroup(program)
    .command("preview <file>")
    .description("show how examples are rendered and tokenized, with the trained (loss) tokens marked")
    .requiredOption("--base <model.gguf>", "model whose chat template and tokenizer are used")
    .option("--index <n>", "first example to show (0-based)", num("--index", { int: true, min: 0 }), 0)
    .option("--count <n>", "examples to show", num("--count", { int: true, min: 1 }), 1)
    .option("--include-prompt", "train on prompt tokens too")
    .option("--template <jinja|chatml>", "chat template instead of the model's own")
    .option("--json", "print JSON")
    .action(
      action(async (file: string, _o: unknown, cmd: Command) => {
        const o = cmd.opts() as {
          base: string;
          index: number;
          count: number;
          includePrompt?: boolean;
          template?: string;
          json?: boolean;
        };
        const f = ChatFormatter.fromGguf(o.base, o.template);
        const examples = (await readExamples([file])).slice(o.index, o.index + o.count);
        if (!examples.length) throw new DajianError("invalid_input", `no example at index ${o.index}`, "lower --index");
        const tty = Boolean(process.stdout.isTTY);
        for (const ex of examples) {
          const { ids, mask } = f.encode(ex.messages, { includePrompt: o.includePrompt });
          const tokens = ids.map((id, i) => ({
            id,
            text: f.tokenizer.decode([id], { special: true }),
            trained: mask[i] === 1,
          }));
          if (o.json) {
            printJson({ source: ex.source, tokens, trained: tokens.filter((t) => t.trained).length });
            continue;
          }
          // Trained spans: green on a terminal, ⟦…⟧ otherwise.
          let line = "";
          let open = false;
          for (const t of tokens) {
            if (t.trained !== open) {
              line += t.trained ? (tty ? "\x1b[42;30m" : "⟦") : tty ? "\x1b[0m" : "⟧";
              open = t.trained;
            }
            line += t.text;
          }
          if (open) line += tty ? "\x1b[0m" : "⟧";
          const n = tokens.filter((t) => t.trained).length;
          process.stdout.write(`# ${ex.source}: ${tokens.length} tokens, ${n} trained\n${line}\n`);
        }
      }),
    );
}

export function registerFinetuneCommands(program: Command): void {
  registerFinetune(program);
  registerMerge(program);
  registerEvalQa(program);
  registerDataPreview(program);
}
