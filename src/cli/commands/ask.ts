// `dajian ask KB "question"` and `dajian chat [KB]`: grounded answers with citations from the terminal.
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { DajianError, errorLine } from "../../core/errors.js";
import { answerStream, type AnswerDeps } from "../../answer/answer.js";
import { ConversationStore } from "../../answer/conversations.js";
import type { Answer } from "../../answer/types.js";
import { KnowledgeBases } from "../../index/kb.js";
import { ModelManager } from "../../models/manager.js";
import type { ChatMessage } from "../../models/types.js";
import { openHomeDb } from "../../store/sqlite.js";
import { applyOutboundConfig } from "./models.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";

interface Session {
  deps: AnswerDeps;
  kbs: KnowledgeBases;
  models: ModelManager;
  store: ConversationStore;
  close(): Promise<void>;
}

async function openSession(cmd: Command, kb: string | undefined, modelName: string | undefined): Promise<Session> {
  const home = homeOf(cmd);
  applyOutboundConfig(home);
  const db = openHomeDb(home);
  const kbs = new KnowledgeBases(home, { db });
  const models = new ModelManager({ db, home });
  const close = async () => {
    await models.unload();
    await kbs.close();
    db.close();
  };
  try {
    if (kb) await kbs.get(kb);
    const model = await models.chat(modelName);
    const store = new ConversationStore(db);
    const deps: AnswerDeps = { search: (q, o) => kbs.search(kb!, q, o), model, store };
    return { deps, kbs, models, store, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function citationsJson(a: Answer) {
  return a.citations.map((c) => ({
    index: c.index,
    document: c.document,
    page: c.page ?? null,
    heading: c.heading,
    quote: c.quote,
  }));
}

function printSources(a: Answer): void {
  if (!a.citations.length) return;
  process.stdout.write("\nSources:\n");
  for (const c of a.citations) {
    const where = [c.document, c.page !== undefined ? `p.${c.page}` : "", c.heading ?? ""].filter(Boolean).join(" · ");
    process.stdout.write(`  [${c.index}] ${where}\n      “${c.quote}”\n`);
  }
}

export function registerAsk(program: Command): void {
  withHome(
    program
      .command("ask <kb> <question>")
      .description("answer a question from a knowledge base, with numbered citations")
      .option("--model <name>", "chat model (default: the default model; none = extractive answer)")
      .option("--top-k <n>", "passages to retrieve", "8")
      .option("--max-tokens <n>", "tokens for the answer", "512")
      .option("--conversation <id>", "continue a stored conversation (follow-up questions)")
      .option("--min-overlap <x>", "share of question terms a passage must contain (0 disables the not-found check)")
      .option("--json", "print JSON {answer, citations:[{index, document, page, quote}]}"),
  ).action(
    action(async (kb: string, question: string, o: Record<string, any>, cmd: Command) => {
      const s = await openSession(cmd, kb, o.model);
      try {
        const topK = Number(o.topK);
        const maxTokens = Number(o.maxTokens);
        if (!Number.isInteger(topK) || topK < 1)
          throw new DajianError("invalid_input", "--top-k must be a positive integer", "e.g. --top-k 8");
        if (!Number.isInteger(maxTokens) || maxTokens < 1)
          throw new DajianError("invalid_input", "--max-tokens must be a positive integer", "e.g. --max-tokens 512");
        const minOverlap = o.minOverlap === undefined ? undefined : Number(o.minOverlap);
        let answer: Answer | undefined;
        for await (const e of answerStream(s.deps, {
          question,
          kb,
          topK,
          maxTokens,
          minOverlap,
          conversationId: o.conversation,
        })) {
          if (e.type === "delta" && !o.json) process.stdout.write(e.text);
          if (e.type === "done") answer = e.answer;
        }
        if (!answer) throw new DajianError("internal", "no answer produced", "report this bug");
        if (o.json) {
          printJson({
            answer: answer.answer,
            citations: citationsJson(answer),
            mode: answer.mode,
            noAnswer: answer.noAnswer,
            conversationId: answer.conversationId,
            ...(answer.hint ? { hint: answer.hint } : {}),
            ...(answer.usage ? { usage: answer.usage } : {}),
          });
        } else {
          process.stdout.write("\n");
          printSources(answer);
          if (answer.hint) process.stderr.write(`\nhint: ${answer.hint}\n`);
        }
      } finally {
        await s.close();
      }
    }),
  );

  withHome(
    program
      .command("chat [kb]")
      .description("interactive chat in the terminal (with a knowledge base: grounded answers with citations)")
      .option("--model <name>", "chat model (default: the default model)")
      .option("--max-tokens <n>", "tokens per answer", "512"),
  ).action(
    action(async (kb: string | undefined, o: { model?: string; maxTokens: string }, cmd: Command) => {
      const s = await openSession(cmd, kb, o.model);
      const tty = Boolean(process.stdin.isTTY);
      const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty });
      const maxTokens = Number(o.maxTokens);
      try {
        if (!kb && !s.deps.model)
          throw new DajianError(
            "invalid_input",
            "chat without a knowledge base needs a model",
            "add one (`dajian pull …` or `dajian models add NAME --provider deepseek`), or give a KB: dajian chat KB",
          );
        if (tty)
          process.stdout.write(
            `dajian chat${kb ? ` · ${kb}` : ""}${s.deps.model ? ` · ${s.deps.model.name}` : " · extractive"} — /new starts over, /exit quits\n> `,
          );
        let conversationId: string | undefined;
        const history: ChatMessage[] = [];
        for await (const raw of rl) {
          const line = raw.trim();
          if (line === "/exit" || line === "/quit") break;
          if (line === "/new") {
            conversationId = undefined;
            history.length = 0;
          } else if (line) {
            try {
              if (kb) {
                for await (const e of answerStream(s.deps, { question: line, kb, conversationId, maxTokens })) {
                  if (e.type === "delta") process.stdout.write(e.text);
                  if (e.type === "done") {
                    conversationId = e.answer.conversationId;
                    process.stdout.write("\n");
                    printSources(e.answer);
                  }
                }
              } else {
                history.push({ role: "user", content: line });
                let text = "";
                for await (const c of s.deps.model!.stream(history, { maxTokens })) {
                  if (c.type === "delta") {
                    text += c.text;
                    process.stdout.write(c.text);
                  }
                }
                history.push({ role: "assistant", content: text });
                process.stdout.write("\n");
              }
            } catch (err) {
              process.stderr.write(`dajian: ${errorLine(err)}\n`);
            }
          }
          if (tty) process.stdout.write("> ");
        }
      } finally {
        rl.close();
        await s.close();
      }
    }),
  );

  withHome(
    program
      .command("conversations")
      .description("stored conversations (newest first)")
      .option("--kb <name>", "only this knowledge base")
      .option("--show <id>", "print one conversation's messages")
      .option("--json", "print JSON"),
  ).action(
    action(async (o: { kb?: string; show?: string; json?: boolean }, cmd: Command) => {
      const db = openHomeDb(homeOf(cmd));
      try {
        const store = new ConversationStore(db);
        if (o.show) {
          const conversation = store.require(o.show);
          const messages = store.messages(o.show);
          if (o.json) return printJson({ conversation, messages });
          for (const m of messages) process.stdout.write(`${m.role === "user" ? "you" : "dajian"}: ${m.content}\n\n`);
          return;
        }
        const list = store.list({ kb: o.kb });
        if (o.json) return printJson({ conversations: list });
        printTable(
          list.map((c) => ({
            id: c.id,
            kb: c.kb,
            model: c.model,
            title: c.title,
            updated: new Date(c.updatedAt).toISOString(),
          })),
        );
      } finally {
        db.close();
      }
    }),
  );
}
