// `dajian data clean|dedup|split|stats|from-kb`: thin shells over src/data. Inputs are files (text or JSONL) or a
// knowledge base (--kb NAME); outputs are written atomically; progress on stderr, results on stdout.
import { InvalidArgumentError, type Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { terminalProgress } from "../../core/progress.js";
import { KnowledgeBases } from "../../index/kb.js";
import type { Lang, Normalization } from "../../data/clean.js";
import { cleanCorpus, dedupCorpus, splitCorpus, type SourceSpec } from "../../data/pipeline.js";
import { parseFormat, type RecordFormat } from "../../data/records.js";
import { corpusStats, writeStatsHtml } from "../../data/stats.js";
import { loadGgufTokenizer } from "../../data/sft.js";
import { qaFromKb } from "../../data/from-kb.js";
import { applyOutboundConfig } from "./models.js";
import { ModelManager } from "../../models/manager.js";
import { openHomeDb } from "../../store/sqlite.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";

/** The shared `dajian data` command group (created on first use; other areas add subcommands to it). */
export function dataGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "data") ??
    program.command("data").description("prepare training data: clean, dedup, split, stats, Q&A from a knowledge base")
  );
}

/** Option parsers must throw commander's InvalidArgumentError: commander then prints one line and exits 1. */
function optionParser<T>(parse: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return parse(v);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof DajianError ? err.oneLine() : String(err));
    }
  };
}

function num(flag: string, o: { min?: number; max?: number; int?: boolean; eg?: number } = {}) {
  return optionParser((v: string) => {
    const n = Number(v);
    if (
      v.trim() === "" ||
      !Number.isFinite(n) ||
      (o.int && !Number.isInteger(n)) ||
      (o.min !== undefined && n < o.min) ||
      (o.max !== undefined && n > o.max)
    ) {
      const range = `${o.int ? "an integer" : "a number"}${o.min !== undefined ? ` ≥ ${o.min}` : ""}${o.max !== undefined ? ` ≤ ${o.max}` : ""}`;
      throw new DajianError(
        "invalid_input",
        `${flag} must be ${range}, got '${v}'`,
        `pass e.g. ${flag} ${o.eg ?? (o.min !== undefined && o.min > 0 ? o.min : 1)}`,
      );
    }
    return n;
  });
}

interface InputOpts {
  kb?: string;
  format: string;
  field: string;
  maxDocChars?: number;
  outFormat?: string;
  json?: boolean;
}

/** Common input options: files or --kb, text format, JSONL field. */
function withInput(cmd: Command): Command {
  return withHome(cmd)
    .option("--kb <name>", "read the documents of this knowledge base instead of files")
    .option(
      "--format <fmt>",
      "input format: auto (by extension), paragraphs (blank-line separated), lines, jsonl",
      "auto",
    )
    .option("--field <name>", "JSONL field holding the text", "text")
    .option(
      "--max-doc-chars <n>",
      "refuse documents longer than this (bounded memory)",
      num("--max-doc-chars", { min: 1, int: true }),
    )
    .option("--out-format <fmt>", "output format: paragraphs, lines or jsonl (default: by extension, else the input's)")
    .option("--json", "print the report as JSON");
}

function outFormatOf(o: InputOpts): RecordFormat | undefined {
  if (!o.outFormat) return undefined;
  const f = parseFormat(o.outFormat);
  if (f === "auto") return undefined;
  return f;
}

/** Run fn with a SourceSpec for the command's inputs (opening the KB when --kb is given). */
async function withSource<T>(
  cmd: Command,
  files: string[],
  o: InputOpts,
  fn: (s: SourceSpec) => Promise<T>,
): Promise<T> {
  const read = { format: parseFormat(o.format), field: o.field, maxDocChars: o.maxDocChars };
  if (!o.kb) {
    if (files.length === 0) throw new DajianError("invalid_input", "no input given", "pass input files or --kb NAME");
    return fn({ files, read });
  }
  if (files.length)
    throw new DajianError("invalid_input", "give input files or --kb, not both", "run once per input kind");
  const kbs = new KnowledgeBases(homeOf(cmd), { embedder: null });
  try {
    await kbs.get(o.kb);
    return await fn({ kb: { kbs, name: o.kb }, read });
  } finally {
    await kbs.close();
  }
}

async function withProgress<T>(fn: (p: ReturnType<typeof terminalProgress>) => Promise<T>): Promise<T> {
  const p = terminalProgress();
  try {
    return await fn(p);
  } finally {
    p.end();
  }
}

const LANGS: Lang[] = ["zh", "en", "mixed", "other"];

function parseLangs(v: string): Lang[] {
  const out = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const l of out)
    if (!LANGS.includes(l as Lang))
      throw new DajianError("invalid_input", `unknown language '${l}'`, `use a comma list of ${LANGS.join(", ")}`);
  return out as Lang[];
}

function parseNormalize(v: string): Normalization {
  if (v === "nfc" || v === "nfkc" || v === "none") return v;
  throw new DajianError("invalid_input", `unknown --normalize '${v}'`, "use nfc, nfkc or none");
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export function registerData(program: Command): void {
  const data = dataGroup(program);

  withInput(
    data
      .command("clean [inputs...]")
      .description("normalise Unicode, filter by length/language/symbols/digits/repeated lines, optionally scrub PII")
      .requiredOption("--out <file>", "cleaned output (.jsonl → JSONL, otherwise text)")
      .option("--normalize <form>", "nfc | nfkc | none", optionParser(parseNormalize), "nfc")
      .option("--min-chars <n>", "drop shorter documents", num("--min-chars", { min: 0, int: true }), 1)
      .option("--max-chars <n>", "drop longer documents", num("--max-chars", { min: 1, int: true }))
      .option("--lang <list>", "keep only these languages (zh,en,mixed,other)", optionParser(parseLangs))
      .option(
        "--max-symbol-ratio <r>",
        "drop when symbols exceed this share",
        num("--max-symbol-ratio", { min: 0, max: 1, eg: 0.3 }),
        0.3,
      )
      .option(
        "--max-digit-ratio <r>",
        "drop when digits exceed this share",
        num("--max-digit-ratio", { min: 0, max: 1, eg: 0.3 }),
        0.3,
      )
      .option(
        "--max-repeated-lines <r>",
        "drop when this share of lines repeat",
        num("--max-repeated-lines", { min: 0, max: 1, eg: 0.3 }),
        0.3,
      )
      .option("--pii", "replace mobile numbers, resident ID numbers and e-mails with <PHONE>, <ID_NUMBER>, <EMAIL>")
      .option("--pii-landline", "with --pii, also replace landline numbers with <TEL>"),
  ).action(
    action(async (inputs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as InputOpts & {
        out: string;
        normalize: Normalization;
        minChars: number;
        maxChars?: number;
        lang?: Lang[];
        maxSymbolRatio: number;
        maxDigitRatio: number;
        maxRepeatedLines: number;
        pii?: boolean;
        piiLandline?: boolean;
      };
      const r = await withSource(cmd, inputs, o, (spec) =>
        withProgress((onProgress) =>
          cleanCorpus(spec, o.out, {
            normalize: o.normalize,
            minChars: o.minChars,
            maxChars: o.maxChars,
            langs: o.lang,
            maxSymbolRatio: o.maxSymbolRatio,
            maxDigitRatio: o.maxDigitRatio,
            maxRepeatedLines: o.maxRepeatedLines,
            pii: o.pii ? { landline: o.piiLandline } : false,
            outFormat: outFormatOf(o),
            onProgress,
          }),
        ),
      );
      if (o.json) return printJson(r);
      const dropped = Object.entries(r.dropped).filter(([, n]) => n > 0);
      process.stdout.write(
        `${r.kept}/${r.read} documents kept → ${r.out}` +
          (dropped.length ? ` · dropped: ${dropped.map(([k, n]) => `${k} ${n}`).join(", ")}` : "") +
          (o.pii
            ? ` · PII replaced: ${Object.entries(r.pii)
                .map(([k, n]) => `${k} ${n}`)
                .join(", ")}`
            : "") +
          (r.badLines ? ` · ${r.badLines} malformed lines skipped (first: ${r.badLineSamples[0]?.where})` : "") +
          "\n",
      );
    }),
  );

  withInput(
    data
      .command("dedup [inputs...]")
      .description(
        "remove exact duplicates (hash) and near duplicates (MinHash + LSH), keeping the first of each group",
      )
      .requiredOption("--out <file>", "deduplicated output")
      .option(
        "--threshold <j>",
        "estimated Jaccard similarity (character 5-grams) that counts as a duplicate",
        num("--threshold", { min: 0.01, max: 1, eg: 0.8 }),
        0.8,
      )
      .option("--bands <n>", "LSH bands", num("--bands", { min: 1, max: 1024, int: true }), 16)
      .option(
        "--rows <n>",
        "LSH rows per band (signature size = bands × rows)",
        num("--rows", { min: 1, max: 1024, int: true }),
        8,
      )
      .option("--shingle <n>", "character n-gram size", num("--shingle", { min: 1, max: 64, int: true }), 5)
      .option("--seed <n>", "hash seed", num("--seed", { int: true }), 1)
      .option("--exact-only", "only remove exact duplicates")
      .option("--removed <file>", "write removed documents (with what they duplicate) to this JSONL file"),
  ).action(
    action(async (inputs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as InputOpts & {
        out: string;
        threshold: number;
        bands: number;
        rows: number;
        shingle: number;
        seed: number;
        exactOnly?: boolean;
        removed?: string;
      };
      const r = await withSource(cmd, inputs, o, (spec) =>
        withProgress((onProgress) =>
          dedupCorpus(spec, o.out, {
            threshold: o.threshold,
            bands: o.bands,
            rows: o.rows,
            shingle: o.shingle,
            seed: o.seed,
            exactOnly: o.exactOnly,
            removedOut: o.removed,
            outFormat: outFormatOf(o),
            onProgress,
          }),
        ),
      );
      if (o.json) return printJson(r);
      process.stdout.write(
        `${r.kept}/${r.seen} documents kept → ${r.out} · exact duplicates ${r.exact} · near duplicates ${r.near} ` +
          `(Jaccard ≥ ${r.threshold}, ${r.bands}×${r.rows} LSH) · duplicate rate ${pct(r.duplicateRate)}\n`,
      );
    }),
  );

  withInput(
    data
      .command("split [inputs...]")
      .description("deterministic train/validation split by hash")
      .requiredOption("--train <file>", "training output")
      .requiredOption("--val <file>", "validation output")
      .option(
        "--val-ratio <r>",
        "share of documents for validation",
        num("--val-ratio", { min: 0, max: 1, eg: 0.05 }),
        0.05,
      )
      .option("--seed <n>", "hash seed (same seed + same data = same split)", num("--seed", { int: true }), 1)
      .option("--by-id", "hash the record id (file:line or JSONL id) instead of the text"),
  ).action(
    action(async (inputs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as InputOpts & {
        train: string;
        val: string;
        valRatio: number;
        seed: number;
        byId?: boolean;
      };
      const r = await withSource(cmd, inputs, o, (spec) =>
        withProgress((onProgress) =>
          splitCorpus(spec, o.train, o.val, {
            ratio: o.valRatio,
            seed: o.seed,
            byId: o.byId,
            outFormat: outFormatOf(o),
            onProgress,
          }),
        ),
      );
      if (o.json) return printJson(r);
      process.stdout.write(`${r.train} train → ${r.trainOut} · ${r.validation} validation → ${r.validationOut}\n`);
    }),
  );

  withInput(
    data
      .command("stats [inputs...]")
      .description("documents, characters, tokens, language mix, length histogram and duplicate rate")
      .option("--tokenizer <model.gguf>", "count tokens with this GGUF model's tokenizer")
      .option("--html <file>", "also write an HTML report")
      .option("--no-dedup", "skip the duplicate-rate pass"),
  ).action(
    action(async (inputs: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as InputOpts & { tokenizer?: string; html?: string; dedup: boolean };
      const tok = o.tokenizer ? loadGgufTokenizer(o.tokenizer) : undefined;
      const s = await withSource(cmd, inputs, o, (spec) =>
        withProgress((onProgress) =>
          corpusStats(spec, {
            tokenizer: tok?.tokenizer,
            tokenizerName: o.tokenizer,
            dedup: o.dedup ? {} : false,
            onProgress,
          }),
        ),
      );
      if (o.html) writeStatsHtml(o.html, s, o.kb ? `kb:${o.kb}` : inputs.join(", "));
      if (o.json) return printJson(s);
      printTable(
        [
          { metric: "documents", value: s.documents },
          { metric: "characters", value: s.characters },
          ...(s.tokens !== undefined ? [{ metric: "tokens", value: s.tokens }] : []),
          { metric: "chars/doc min·mean·max", value: `${s.minChars} · ${Math.round(s.meanChars)} · ${s.maxChars}` },
          {
            metric: "languages",
            value: Object.entries(s.languages)
              .filter(([, n]) => n)
              .map(([k, n]) => `${k} ${n}`)
              .join(", "),
          },
          {
            metric: "duplicates exact·near",
            value: `${s.exactDuplicates} · ${s.nearDuplicates} (${pct(s.duplicateRate)})`,
          },
          { metric: "digit·symbol share", value: `${pct(s.digitRatio)} · ${pct(s.symbolRatio)}` },
        ],
        ["metric", "value"],
      );
      process.stdout.write("length histogram (characters):\n");
      for (const b of s.histogram) process.stdout.write(`  ${String(b.from).padStart(8)}–${b.to ?? "∞"}\t${b.count}\n`);
      if (o.html) process.stdout.write(`report → ${o.html}\n`);
    }),
  );

  withHome(
    data
      .command("from-kb <kb>")
      .description("question/answer pairs from a knowledge base's documents, with a review report, for fine-tuning")
      .requiredOption("--out <file.jsonl>", "output JSONL (alpaca fields instruction/input/output + source)")
      .option("--model <name>", "generate with this chat model (default: the configured default model, if any)")
      .option("--templates", "use templates (headings, tables, definitions) even when a model is configured")
      .option("--max <n>", "at most this many pairs", num("--max", { min: 1, int: true }))
      .option(
        "--per-passage <n>",
        "pairs asked of the model per passage",
        num("--per-passage", { min: 1, max: 20, int: true }),
        3,
      )
      .option("--json", "print the report as JSON"),
  ).action(
    action(async (kb: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        out: string;
        model?: string;
        templates?: boolean;
        max?: number;
        perPassage: number;
        json?: boolean;
      };
      if (o.model && o.templates)
        throw new DajianError("invalid_input", "--model and --templates exclude each other", "pick one");
      const home = homeOf(cmd);
      applyOutboundConfig(home);
      const db = openHomeDb(home);
      const kbs = new KnowledgeBases(home, { db, embedder: null });
      const models = new ModelManager({ db, home });
      try {
        await kbs.get(kb);
        const model = o.templates ? undefined : await models.chat(o.model);
        const r = await withProgress((onProgress) =>
          qaFromKb(kbs, kb, o.out, { model, max: o.max, perPassage: o.perPassage, onProgress }),
        );
        if (o.json) return printJson({ ...r, model: model?.name ?? null });
        process.stdout.write(
          `${r.pairs} pairs from ${r.documents} documents (${model ? `model ${model.name}` : "templates"}) → ${r.out}\n` +
            `review before training: ${r.reviewHtml} · ${r.reviewMarkdown}\n` +
            (r.failures ? `${r.failures} passages failed (first: ${r.failureSamples[0]})\n` : ""),
        );
      } finally {
        await models.unload();
        await kbs.close();
        db.close();
      }
    }),
  );
}
