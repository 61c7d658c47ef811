// `dajian eval retrieval NAME --queries FILE.jsonl [--top-k N] [--budget CHARS] [--json]`.
// The `eval` group is shared with other areas (perplexity, qa): whoever registers first creates it.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { DajianError, errorLine } from "../../core/errors.js";
import { terminalProgress } from "../../core/progress.js";
import { evalRetrieval, type EvalQuery } from "../../index/eval.js";
import { action, printJson, printTable, withHome } from "../util.js";
import { readJsonl, withKbs } from "./kb.js";

/** The shared `dajian eval` command group (created on first use). */
export function evalGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "eval") ??
    program.command("eval").description("evaluate retrieval, models and answers")
  );
}

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) {
      throw new DajianError("invalid_input", `${name} must be a positive integer, got '${v}'`, `pass e.g. ${name} 10`);
    }
    return n;
  };
}

export function registerEvalRetrieval(program: Command): void {
  withHome(
    evalGroup(program)
      .command("retrieval <name>")
      .description("answer-recall within a context budget, recall@k of gold documents and MRR")
      .requiredOption("--queries <file>", 'JSONL lines {"id","question","answers","positive_ids"}')
      .option("--top-k <n>", "results per query", positiveInt("--top-k"), 10)
      .option(
        "--budget <chars>",
        "context budget in characters (default 2000 Chinese / 4000 other)",
        positiveInt("--budget"),
      )
      .option("--doc-map <file>", 'JSON object {"positiveId": "document name"} (default: id = file name stem)')
      .option("--mode <mode>", "hybrid | keyword | vector")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        queries: string;
        topK: number;
        budget?: number;
        docMap?: string;
        mode?: string;
        json?: boolean;
      };
      let docFor: ((id: string) => string | undefined) | undefined;
      if (o.docMap) {
        let map: Record<string, string>;
        try {
          map = JSON.parse(readFileSync(o.docMap, "utf8")) as Record<string, string>;
        } catch (err) {
          throw new DajianError(
            "invalid_input",
            `cannot read --doc-map ${o.docMap}: ${errorLine(err)}`,
            "give a JSON object {id: document}",
          );
        }
        docFor = (id) => map[id];
      }
      const queries: EvalQuery[] = [];
      for await (const { line, value, error } of readJsonl(o.queries)) {
        const q = value as EvalQuery | undefined;
        if (error || !q || typeof q.question !== "string") {
          throw new DajianError(
            "invalid_input",
            error ?? `line ${line} of ${o.queries} has no "question"`,
            "fix the file",
          );
        }
        queries.push(q);
      }
      await withKbs(cmd, async (kbs) => {
        const progress = terminalProgress();
        const r = await evalRetrieval(kbs, name, queries, {
          topK: o.topK,
          budget: o.budget,
          docFor,
          search: o.mode ? { mode: o.mode as "hybrid" | "keyword" | "vector" } : undefined,
          onProgress: progress,
        });
        progress.end();
        if (o.json) {
          printJson(r);
          return;
        }
        const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
        printTable([
          {
            metric: `answer-recall @ ${r.budget === "auto" ? "2000/4000" : r.budget} chars`,
            value: pct(r.answerRecall),
            over: `${r.evaluated} questions`,
          },
          { metric: `recall@${r.topK} (gold documents)`, value: pct(r.recallAtK), over: `${r.withGold} questions` },
          { metric: `MRR@${r.topK}`, value: r.mrr.toFixed(3), over: `${r.withGold} questions` },
          { metric: "skipped (answer not in KB text)", value: String(r.skipped), over: `${r.queries} questions` },
        ]);
      });
    }),
  );
}
