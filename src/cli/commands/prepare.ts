// Stage 1 commands — choose and prepare a model: `models catalog|estimate|import|export`, `quantize`,
// `bench model`, `eval perplexity`. Thin shells over src/models/{catalog,memory,import,quantize,bench-model,perplexity}.
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { terminalProgress } from "../../core/progress.js";
import { benchModel } from "../../models/bench-model.js";
import { catalogReport, type CatalogLang, type CatalogTask } from "../../models/catalog.js";
import { detectHardware } from "../../models/hardware.js";
import { exportModel, importModel } from "../../models/import.js";
import { estimateGgufFile, formatBytes } from "../../models/memory.js";
import { perplexity } from "../../models/perplexity.js";
import { parseQuantType, quantizeModel } from "../../models/quantize.js";
import { localModelFile } from "../model-file.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";
import { evalGroup } from "./eval-retrieval.js";

/** Find-or-create a command group, so areas can share `models`, `bench` … whoever registers first. */
export function commandGroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

function posInt(flag: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new DajianError("invalid_input", `${flag} must be a positive integer, got '${v}'`, `pass e.g. ${flag} 4`);
    return n;
  };
}

const gib = (n?: number) => (n === undefined ? "" : formatBytes(n));

export function registerPrepare(program: Command): void {
  const models = commandGroup(program, "models", "manage models: list, add, pull, catalog, import, export");

  withHome(
    models
      .command("catalog")
      .description("curated open models with the quantization and context that fit this machine")
      .option("--fits", "only models that fit")
      .option("--task <task>", "chat | embedding | rerank")
      .option("--lang <lang>", "zh | en")
      .option("--no-gpu", "ignore any GPU")
      .option("--json", "print JSON"),
  ).action(
    action(async (_opts: unknown, cmd: Command) => {
      const o = cmd.opts() as { fits?: boolean; task?: string; lang?: string; gpu: boolean; json?: boolean };
      if (o.task && !["chat", "embedding", "rerank"].includes(o.task))
        throw new DajianError("invalid_input", `unknown --task ${o.task}`, "use chat, embedding or rerank");
      if (o.lang && !["zh", "en"].includes(o.lang))
        throw new DajianError("invalid_input", `unknown --lang ${o.lang}`, "use zh or en");
      const hw = await detectHardware({ gpu: o.gpu });
      const r = catalogReport(hw, { fits: o.fits, task: o.task as CatalogTask, lang: o.lang as CatalogLang });
      if (o.json) return printJson(r);
      const gpu = hw.gpu
        ? `, ${hw.gpu.type} ${gib(hw.gpu.vramFree)} free of ${gib(hw.gpu.vramTotal)} VRAM`
        : ", no GPU";
      process.stdout.write(
        `This machine: ${gib(hw.ramAvailable)} available of ${gib(hw.ramTotal)} RAM${hw.cgroupLimit ? " (container limit)" : ""}, ` +
          `${hw.cpuCores} cores, ~${(hw.memBandwidth / 1e9).toFixed(0)} GB/s memcpy${gpu}. Catalog ${r.catalogVersion}.\n\n`,
      );
      printTable(
        r.models.map((m) => ({
          model: m.name,
          tasks: m.tasks.join(","),
          lang: m.languages.join(","),
          params: m.params >= 1e9 ? `${(m.params / 1e9).toFixed(1)}B` : `${Math.round(m.params / 1e6)}M`,
          quant: m.quant ?? "-",
          ctx: m.contextSize ?? "-",
          "max ctx": m.maxContextSize ?? "-",
          memory: m.memory ? gib(m.memory.total) : "-",
          device: m.device ?? "-",
          speed: m.fits
            ? m.tasks.includes("chat")
              ? `${m.speed} ~${m.tokensPerSecond!.toFixed(0)} tok/s`
              : m.speed
            : (m.reason ?? "does not fit"),
          licence: m.licence,
        })),
      );
      const rec = r.recommended;
      process.stdout.write(
        `\nRecommended: chat ${rec.chat ?? "(none fits)"} · embedding ${rec.embedding ?? "(none fits)"}${rec.rerank ? ` · rerank ${rec.rerank}` : ""}\n` +
          `Fetch one with: dajian pull ${rec.chat ?? "NAME[:QUANT]"}   (memory and speed are estimates)\n`,
      );
    }),
  );

  withHome(
    models
      .command("estimate <gguf>")
      .description("memory a GGUF needs at a context size (weights + KV cache + compute + runtime)")
      .option("--ctx <n>", "context size", posInt("--ctx"))
      .option("--gpu-layers <n>", "layers offloaded to the GPU", posInt("--gpu-layers"))
      .option("--json", "print JSON"),
  ).action(
    action(async (file: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as { ctx?: number; gpuLayers?: number; json?: boolean };
      const e = estimateGgufFile(localModelFile(cmd, file), { contextSize: o.ctx, gpuLayers: o.gpuLayers });
      if (o.json) return printJson(e);
      printTable([
        { part: "weights", bytes: gib(e.weights) },
        { part: `KV cache (${e.contextSize} tokens)`, bytes: gib(e.kvCache) },
        { part: "output buffer", bytes: gib(e.output) },
        { part: "compute buffer", bytes: gib(e.compute) },
        { part: "runtime", bytes: gib(e.runtime) },
        { part: "total RAM", bytes: gib(e.ram) },
        ...(e.vram ? [{ part: "total VRAM", bytes: gib(e.vram) }] : []),
      ]);
    }),
  );

  withHome(
    models
      .command("import <src>")
      .description("import a .gguf file (or a folder from `models export`) for offline use: validate, hash, register")
      .option("--name <name>", "model name (default: the GGUF's general.name)")
      .option("--json", "print JSON"),
  ).action(
    action(async (src: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as { name?: string; json?: boolean };
      const bar = terminalProgress();
      const r = await importModel(homeOf(cmd), src, { name: o.name, onProgress: bar });
      bar.end();
      const { chatTemplate, ...m } = r.manifest;
      if (o.json) return printJson({ ...r, manifest: { ...m, hasChatTemplate: Boolean(chatTemplate) } });
      process.stdout.write(
        `imported ${r.name}: ${m.architecture} ${m.quantization}, ${(m.parameters / 1e6).toFixed(1)}M params, context ${m.contextLength ?? "?"}, ` +
          `chat template ${chatTemplate ? "yes" : "no"}\n  ${r.path}\n  sha256 ${m.sha256}\n`,
      );
    }),
  );

  withHome(
    models
      .command("export <name> <dir>")
      .description("write a registered local model to DIR (GGUF + manifest.json) for `models import DIR` elsewhere")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, dir: string, _opts: unknown, cmd: Command) => {
      const bar = terminalProgress();
      const r = await exportModel(homeOf(cmd), name, dir, { onProgress: bar });
      bar.end();
      if ((cmd.opts() as { json?: boolean }).json)
        return printJson({ dir: r.dir, manifest: { ...r.manifest, chatTemplate: undefined } });
      process.stdout.write(`exported ${name} to ${r.dir} (${r.manifest.file}, sha256 ${r.manifest.sha256})\n`);
    }),
  );

  withHome(
    program
      .command("quantize <in> <out>")
      .description("quantize a GGUF with llama.cpp's own quantizer")
      .requiredOption(
        "--type <type>",
        "Q8_0 | Q6_K | Q5_K_M | Q4_K_M | Q4_0 | F16 (also Q5_0, Q4_K_S, Q5_K_S, Q3_K_M, BF16, F32)",
      )
      .option("--threads <n>", "threads (default: all cores)", posInt("--threads"))
      .option("--report <text>", "also print size and perplexity before/after on this text file")
      .option("--ctx <n>", "perplexity window for --report", posInt("--ctx"))
      .option("--force", "overwrite OUT")
      .option("--json", "print JSON"),
  ).action(
    action(async (inp: string, out: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        type: string;
        threads?: number;
        report?: string;
        ctx?: number;
        force?: boolean;
        json?: boolean;
      };
      const type = parseQuantType(o.type);
      const input = localModelFile(cmd, inp);
      let text: string | undefined;
      if (o.report) {
        if (!existsSync(o.report))
          throw new DajianError("not_found", `--report text ${o.report} not found`, "give a UTF-8 text file");
        text = readFileSync(o.report, "utf8");
      }
      const bar = terminalProgress();
      const q = await quantizeModel(input, out, { type, threads: o.threads, overwrite: o.force, onProgress: bar });
      bar.end();
      let report: Record<string, unknown> | undefined;
      if (text !== undefined) {
        const before = await perplexity(input, text, { contextSize: o.ctx, threads: o.threads });
        const after = await perplexity(q.output, text, { contextSize: o.ctx, threads: o.threads });
        report = {
          perplexityBefore: before.perplexity,
          perplexityAfter: after.perplexity,
          perplexityChangePct: (after.perplexity / before.perplexity - 1) * 100,
          tokensScored: after.tokensScored,
        };
      }
      if (o.json) return printJson({ ...q, report });
      process.stdout.write(
        `${q.output}: ${type}, ${gib(q.sizeBefore)} → ${gib(q.sizeAfter)} (${((q.sizeAfter / q.sizeBefore) * 100).toFixed(0)} %) in ${q.seconds.toFixed(1)} s\n`,
      );
      if (report)
        process.stdout.write(
          `perplexity ${(report.perplexityBefore as number).toFixed(3)} → ${(report.perplexityAfter as number).toFixed(3)} ` +
            `(${(report.perplexityChangePct as number) >= 0 ? "+" : ""}${(report.perplexityChangePct as number).toFixed(2)} %) on ${report.tokensScored} tokens\n`,
        );
    }),
  );

  const bench = commandGroup(program, "bench", "measure speed");
  withHome(
    bench
      .command("model <gguf>")
      .description("prompt-processing and generation tokens/s and memory, like llama-bench")
      .option("--ctx <n>", "context size (default prompt + gen)", posInt("--ctx"))
      .option("--threads <n>", "threads", posInt("--threads"))
      .option("--prompt <n>", "prompt tokens for pp (default 512)", posInt("--prompt"))
      .option("--gen <n>", "generated tokens for tg (default 128)", posInt("--gen"))
      .option("--reps <n>", "repetitions (default 3)", posInt("--reps"))
      .option("--gpu", "use a GPU when one is available")
      .option("--json", "print JSON"),
  ).action(
    action(async (file: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        ctx?: number;
        threads?: number;
        prompt?: number;
        gen?: number;
        reps?: number;
        gpu?: boolean;
        json?: boolean;
      };
      const r = await benchModel(localModelFile(cmd, file), {
        contextSize: o.ctx,
        threads: o.threads,
        promptTokens: o.prompt,
        genTokens: o.gen,
        repetitions: o.reps,
        gpu: o.gpu,
      });
      if (o.json) return printJson(r);
      const size = gib(r.fileBytes);
      const params = r.params >= 1e9 ? `${(r.params / 1e9).toFixed(2)} B` : `${(r.params / 1e6).toFixed(1)} M`;
      printTable([
        {
          model: r.model,
          size,
          params,
          backend: r.backend,
          threads: r.threads,
          test: `pp${r.pp.tokens}`,
          "t/s": `${r.pp.mean.toFixed(2)} ± ${r.pp.sd.toFixed(2)}`,
        },
        {
          model: r.model,
          size,
          params,
          backend: r.backend,
          threads: r.threads,
          test: `tg${r.tg.tokens}`,
          "t/s": `${r.tg.mean.toFixed(2)} ± ${r.tg.sd.toFixed(2)}`,
        },
      ]);
      process.stdout.write(
        `peak RSS ${gib(r.peakRssBytes)} (estimated ${gib(r.estimatedBytes)}), load ${r.loadSeconds.toFixed(2)} s, context ${r.contextSize}\n`,
      );
    }),
  );

  withHome(
    evalGroup(program)
      .command("perplexity <model> <text>")
      .description("perplexity of a GGUF (path or local model name) on a UTF-8 text file")
      .option("--ctx <n>", "window size in tokens (default 512)", posInt("--ctx"))
      .option("--threads <n>", "threads", posInt("--threads"))
      .option("--max-tokens <n>", "score at most N tokens", posInt("--max-tokens"))
      .option("--json", "print JSON"),
  ).action(
    action(async (model: string, textFile: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as { ctx?: number; threads?: number; maxTokens?: number; json?: boolean };
      if (!existsSync(textFile))
        throw new DajianError("not_found", `text file ${textFile} not found`, "give a UTF-8 text file");
      const bar = terminalProgress();
      const r = await perplexity(localModelFile(cmd, model), readFileSync(textFile, "utf8"), {
        contextSize: o.ctx,
        threads: o.threads,
        maxTokens: o.maxTokens,
        onProgress: bar,
      });
      bar.end();
      if (o.json) return printJson(r);
      process.stdout.write(
        `perplexity ${r.perplexity.toFixed(4)} (${r.tokensScored} tokens, ${r.windows} windows of ${r.contextSize}, ${r.seconds.toFixed(1)} s)\n`,
      );
    }),
  );
}
