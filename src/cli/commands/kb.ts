// `dajian kb create|list|delete`, `dajian ingest`, `dajian docs [rm]`, `dajian search`: thin shells over
// KnowledgeBases (src/index/kb.ts). Listings take --json; progress goes to stderr, results to stdout.
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { DajianError, errorLine } from "../../core/errors.js";
import { terminalProgress } from "../../core/progress.js";
import { KnowledgeBases, type IngestSummary } from "../../index/kb.js";
import type { SearchOptions, SearchResult } from "../../index/types.js";
import { LOCAL_PRINCIPAL } from "../../security/types.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";
import { withSecurity } from "./keys.js";

export async function withKbs<T>(cmd: Command, fn: (kbs: KnowledgeBases) => Promise<T>): Promise<T> {
  const kbs = new KnowledgeBases(homeOf(cmd));
  try {
    return await fn(kbs);
  } finally {
    await kbs.close();
  }
}

/** Record a CLI change in the same audit hash chain the server writes to (actor "local"). */
function audit(cmd: Command, action: string, target: string, detail?: Record<string, unknown>): Promise<void> {
  return withSecurity(cmd, (sec) => sec.record(LOCAL_PRINCIPAL, action, target, true, detail));
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) {
      throw new DajianError("invalid_input", `${name} must be a positive integer, got '${v}'`, `pass e.g. ${name} 5`);
    }
    return n;
  };
}

/** Read a JSONL file lazily, line by line (bounded memory for large query sets). */
export async function* readJsonl(file: string): AsyncGenerator<{ line: number; value?: unknown; error?: string }> {
  const rl = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const raw of rl) {
      n++;
      if (raw.trim() === "") continue;
      try {
        yield { line: n, value: JSON.parse(raw) };
      } catch {
        yield { line: n, error: `line ${n} of ${file} is not valid JSON` };
      }
    }
  } catch (err) {
    throw new DajianError("invalid_input", `cannot read ${file}: ${errorLine(err)}`, "check the path of --queries");
  }
}

/** CLI JSON shape of a result: the contract fields first, then extras. */
function resultJson(r: SearchResult) {
  return {
    text: r.text,
    score: Number(r.score.toFixed(6)),
    source: r.source,
    documentId: r.documentId,
    chunkId: r.chunkId,
  };
}

function printSummary(s: IngestSummary): void {
  const ok = s.added + s.updated + s.unchanged;
  process.stdout.write(
    `${s.kb}: ${s.added} added, ${s.updated} updated, ${s.unchanged} unchanged, ${s.failed} failed · ` +
      `${s.chunks} chunks · ${s.pages} pages · ${s.seconds.toFixed(1)}s${s.aborted ? " · interrupted" : ""}\n`,
  );
  for (const f of s.files) {
    if (f.status === "failed") process.stdout.write(`  failed  ${f.file}: ${f.reason}\n`);
    else if (f.reason) process.stdout.write(`  note    ${f.file}: ${f.reason}\n`);
  }
  if (ok === 0 && s.files.length === 0) process.stdout.write("  no files found under the given paths\n");
}

export function registerKb(program: Command): void {
  const kb = program.command("kb").description("create, list and delete knowledge bases");
  withHome(kb.command("create <name>").description("create an empty knowledge base")).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      await withKbs(cmd, async (kbs) => {
        await kbs.create(name);
        await audit(cmd, "kb.create", `kb:${name}`);
        process.stdout.write(`created knowledge base ${name} — add documents with \`dajian ingest ${name} PATH\`\n`);
      });
    }),
  );
  withHome(kb.command("list").description("list knowledge bases").option("--json", "print JSON")).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = cmd.opts() as { json?: boolean };
      await withKbs(cmd, async (kbs) => {
        const rows = (await kbs.list()).map((k) => ({
          name: k.name,
          documents: k.documentCount,
          chunks: k.chunkCount,
          embeddingModel: k.embedModel ?? null,
          created: new Date(k.createdAt).toISOString(),
        }));
        if (o.json) printJson(rows);
        else if (rows.length === 0)
          process.stdout.write("no knowledge bases — create one with `dajian kb create NAME`\n");
        else printTable(rows);
      });
    }),
  );
  withHome(kb.command("delete <name>").description("delete a knowledge base with all its documents")).action(
    action(async (name: string, _o: unknown, cmd: Command) => {
      await withKbs(cmd, async (kbs) => {
        await kbs.delete(name);
        // Drop the KB's grants (and audit), as the server does, so a new KB with this name inherits nothing.
        await withSecurity(cmd, (sec) => sec.onKbDeleted(LOCAL_PRINCIPAL, name));
        process.stdout.write(`deleted knowledge base ${name}\n`);
      });
    }),
  );

  withHome(
    program
      .command("ingest <name> <paths...>")
      .description("add files and folders to a knowledge base (unchanged files are skipped)")
      .option("--tag <tag>", "tag the ingested documents (repeatable)", collect)
      .option("--isolate", "parse each file in a worker with a memory cap and hard deadline (untrusted files)")
      .option("--json", "print the per-file summary as JSON"),
  ).action(
    action(async (name: string, paths: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as { tag?: string[]; isolate?: boolean; json?: boolean };
      await withKbs(cmd, async (kbs) => {
        const progress = terminalProgress();
        const ac = new AbortController();
        const onSigint = () => ac.abort(new DajianError("busy", "interrupted", "run the same command again to finish"));
        process.once("SIGINT", onSigint);
        let s: IngestSummary;
        try {
          s = await kbs.ingest(name, paths, {
            tags: o.tag,
            isolate: o.isolate === true,
            onProgress: progress,
            signal: ac.signal,
          });
        } finally {
          process.off("SIGINT", onSigint);
          progress.end();
        }
        await audit(cmd, "document.ingest", name, {
          added: s.added,
          updated: s.updated,
          failed: s.failed,
        });
        if (o.json) printJson(s);
        else printSummary(s);
        // Exit code ≠ 0 only if nothing could be ingested.
        if (s.added + s.updated + s.unchanged === 0) process.exitCode = 1;
      });
    }),
  );

  withHome(
    program
      .command("docs <name> [more...]")
      .description("list documents of a knowledge base; `dajian docs rm NAME DOC` removes one")
      .option("--json", "print JSON"),
  ).action(
    action(async (first: string, more: string[], _o: unknown, cmd: Command) => {
      const o = cmd.opts() as { json?: boolean };
      await withKbs(cmd, async (kbs) => {
        if (first === "rm") {
          if (more.length !== 2) {
            throw new DajianError(
              "invalid_input",
              "docs rm needs a knowledge base and a document",
              "dajian docs rm NAME DOC",
            );
          }
          const r = await kbs.removeDocument(more[0], more[1]);
          await audit(cmd, "document.delete", `${more[0]}/${r.document}`);
          if (o.json) printJson({ removed: r.document, chunks: r.chunks });
          else process.stdout.write(`removed ${r.document} (${r.chunks} chunks) from ${more[0]}\n`);
          return;
        }
        if (more.length > 0) {
          throw new DajianError(
            "invalid_input",
            `unexpected arguments: ${more.join(" ")}`,
            "dajian docs NAME [--json]",
          );
        }
        const docs = await kbs.documents(first);
        if (o.json) {
          printJson(
            docs.map((d) => ({
              id: String(d.id),
              name: d.name,
              format: d.format,
              pages: d.pages ?? null,
              chunks: d.chunkCount,
              bytes: d.bytes,
              sha256: d.sha256,
              tags: d.tags,
              status: d.status,
              needsOcrPages: d.needsOcrPages,
              updated: new Date(d.updatedAt).toISOString(),
            })),
          );
        } else if (docs.length === 0) {
          process.stdout.write(`no documents in ${first} — add some with \`dajian ingest ${first} PATH\`\n`);
        } else {
          printTable(
            docs.map((d) => ({
              name: d.name,
              format: d.format,
              pages: d.pages ?? "",
              chunks: d.chunkCount,
              tags: d.tags.join(","),
              status: d.needsOcrPages.length ? `${d.status} (OCR: ${d.needsOcrPages.length} pages)` : d.status,
            })),
          );
        }
      });
    }),
  );

  withHome(
    program
      .command("search <name> [query]")
      .description("search a knowledge base (or many queries with --queries FILE.jsonl)")
      .option("--top-k <n>", "results per query", positiveInt("--top-k"), 5)
      .option("--queries <file>", "JSONL file with one {question, id?} per line; prints one JSON line per query")
      .option("--doc <doc>", "only this document (repeatable)", collect)
      .option("--tag <tag>", "only documents with this tag (repeatable; all must match)", collect)
      .option("--mode <mode>", "hybrid | keyword | vector (default: hybrid when an embedding model is set)")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, query: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        topK: number;
        queries?: string;
        doc?: string[];
        tag?: string[];
        mode?: string;
        json?: boolean;
      };
      if (o.mode !== undefined && !["hybrid", "keyword", "vector"].includes(o.mode)) {
        throw new DajianError("invalid_input", `unknown --mode '${o.mode}'`, "use hybrid, keyword or vector");
      }
      const opts: SearchOptions = {
        topK: o.topK,
        documents: o.doc,
        tags: o.tag,
        mode: o.mode as SearchOptions["mode"],
      };
      await withKbs(cmd, async (kbs) => {
        if (o.queries !== undefined) {
          if (query !== undefined) {
            throw new DajianError("invalid_input", "give either a QUERY or --queries FILE, not both", "drop one");
          }
          await kbs.get(name); // fail fast on a missing KB
          let failed = 0;
          for await (const { line, value, error } of readJsonl(o.queries)) {
            const q = value as { id?: unknown; question?: unknown } | undefined;
            const id = q && q.id !== undefined ? q.id : line;
            if (error || !q || typeof q.question !== "string") {
              failed++;
              printJson({ id, results: [], error: error ?? `line ${line}: missing "question" string` });
              continue;
            }
            try {
              const { results } = await kbs.search(name, q.question, opts);
              printJson({ id, results: results.map(resultJson) });
            } catch (err) {
              failed++;
              printJson({ id, results: [], error: errorLine(err) });
            }
          }
          if (failed > 0) process.exitCode = 1;
          return;
        }
        if (query === undefined || query.trim() === "") {
          throw new DajianError(
            "invalid_input",
            "no query given",
            `dajian search ${name} "QUESTION" (or --queries FILE.jsonl)`,
          );
        }
        const { results } = await kbs.search(name, query, opts);
        if (o.json) {
          printJson({ results: results.map(resultJson) });
          return;
        }
        if (results.length === 0) {
          process.stdout.write("no results\n");
          return;
        }
        results.forEach((r, i) => {
          const where = [
            r.source.document,
            r.source.page !== undefined ? `p. ${r.source.page}` : "",
            r.source.heading ?? "",
          ]
            .filter(Boolean)
            .join(" · ");
          const text = r.text.replace(/\s+/g, " ");
          process.stdout.write(
            `${i + 1}. [${r.score.toFixed(3)}] ${where}\n   ${text.length > 300 ? text.slice(0, 300) + "…" : text}\n`,
          );
        });
      });
    }),
  );
}
