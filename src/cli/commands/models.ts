// `dajian models add|list|rm|test|default`, `dajian pull`, `dajian generate`: thin shells over src/models.
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { loadConfig } from "../../core/config.js";
import { DajianError } from "../../core/errors.js";
import { configureOutbound } from "../../core/outbound.js";
import { terminalProgress } from "../../core/progress.js";
import { LocalChatModel } from "../../models/local.js";
import { ModelManager, openByNameOrPath } from "../../models/manager.js";
import { PROVIDER_PRESETS } from "../../models/presets.js";
import { pullModel } from "../../models/pull.js";
import { parseAdapterArg, type ModelEntry } from "../../models/registry.js";
import type { ChatMessage, GenerateOptions } from "../../models/types.js";
import { openHomeDb, type SqliteDb } from "../../store/sqlite.js";
import { withSecurity } from "./keys.js";
import { action, homeOf, printJson, printTable, withHome } from "../util.js";

const collect = (v: string, prev: string[] = []) => [...prev, v];

function posInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new DajianError("invalid_input", `${name} must be a positive integer, got '${v}'`, `pass e.g. ${name} 4`);
  return n;
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n))
    throw new DajianError("invalid_input", `${name} must be a number, got '${v}'`, `pass e.g. ${name} 0.7`);
  return n;
}

/** Model changes go to the hash-chained audit log (issue 4: "model changes" are audited). */
async function auditModel(
  cmd: Command,
  action: string,
  target: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await withSecurity(cmd, (sec) => sec.audit.append({ actor: "local", action, target, ok: true, detail }));
}

/** Apply config `outbound.allowHosts` (e.g. an internal mirror or vLLM box) before any outbound request. */
export function applyOutboundConfig(home: string): void {
  const o = loadConfig(home).outbound as { allowHosts?: string[] } | undefined;
  configureOutbound({ allowHosts: o?.allowHosts ?? [] });
}

export async function withModels<T>(
  cmd: Command,
  fn: (m: ModelManager, db: SqliteDb, home: string) => Promise<T>,
): Promise<T> {
  const home = homeOf(cmd);
  applyOutboundConfig(home);
  const db = openHomeDb(home);
  const m = new ModelManager({ db, home });
  try {
    return await fn(m, db, home);
  } finally {
    await m.unload();
    db.close();
  }
}

/** Registry entry as shown to users (no secrets exist in it; the key env var's *name* is shown with whether it is set). */
export function describeEntry(e: ModelEntry): Record<string, unknown> {
  const base = { name: e.name, kind: e.kind, default: e.isDefault, origin: e.origin };
  if (e.kind === "local")
    return {
      ...base,
      path: e.path,
      adapters: e.adapters ?? [],
      contextSize: e.contextSize,
      sequences: e.sequences ?? 1,
      threads: e.threads,
      source: e.source,
      sha256: e.sha256,
    };
  return {
    ...base,
    provider: e.provider,
    baseURL: e.baseURL,
    model: e.model,
    apiKeyEnv: e.apiKeyEnv,
    apiKeySet: e.apiKeyEnv ? Boolean(process.env[e.apiKeyEnv]) : undefined,
    contextSize: e.contextSize,
  };
}

export function registerModels(program: Command): void {
  const models = program.command("models").description("register local GGUF models and OpenAI-compatible providers");

  withHome(
    models
      .command("add <name>")
      .description("register a model: --gguf PATH (local) or --provider PRESET / --base-url URL (remote)")
      .option("--gguf <path>", "local GGUF file")
      .option("--adapter <file[:scale]>", "LoRA adapter GGUF on top of the base (repeatable)", collect)
      .option("--context-size <n>", "tokens per sequence (local) or the provider's window (remote)")
      .option("--threads <n>", "CPU threads (local)")
      .option("--parallel <n>", "parallel sequences / slots (local, default 1)")
      .option("--max-queue <n>", "requests that may wait for a slot before 429 (local, default 4 × parallel)")
      .option("--gpu-layers <n>", 'layers to offload to the GPU (local, default "auto")')
      .option("--provider <preset>", `remote preset: ${Object.keys(PROVIDER_PRESETS).join(", ")}`)
      .option("--base-url <url>", "OpenAI-compatible base URL, e.g. https://api.deepseek.com/v1")
      .option("--api-key-env <VAR>", "NAME of the env var holding the API key (the key is never stored)")
      .option("--model <remote-name>", "model name at the provider")
      .option("--timeout-ms <n>", "remote request idle timeout")
      .option("--allow-private", "allow a base URL on a private/loopback network (your own vLLM/Ollama box)")
      .option("--default", "make it the default chat model")
      .option("--replace", "overwrite an existing entry of that name")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, o: Record<string, any>, cmd: Command) => {
      if (Boolean(o.gguf) === Boolean(o.provider || o.baseUrl))
        throw new DajianError(
          "invalid_input",
          "give either --gguf PATH or --provider/--base-url",
          `e.g. dajian models add ${name} --gguf ./model.gguf  or  dajian models add ${name} --provider deepseek`,
        );
      const spec: Record<string, unknown> = o.gguf
        ? {
            kind: "local",
            path: o.gguf,
            adapters: (o.adapter ?? []).map(parseAdapterArg),
            contextSize: posInt("--context-size", o.contextSize),
            threads: posInt("--threads", o.threads),
            sequences: posInt("--parallel", o.parallel),
            maxQueue: posInt("--max-queue", o.maxQueue),
            gpuLayers: o.gpuLayers === undefined || o.gpuLayers === "auto" ? undefined : Number(o.gpuLayers),
          }
        : {
            kind: "remote",
            provider: o.provider,
            baseURL: o.baseUrl,
            apiKeyEnv: o.apiKeyEnv,
            model: o.model,
            contextSize: posInt("--context-size", o.contextSize),
            timeoutMs: posInt("--timeout-ms", o.timeoutMs),
            allowPrivateNetwork: o.allowPrivate ? true : undefined,
          };
      for (const k of Object.keys(spec)) if (spec[k] === undefined) delete spec[k];
      const entry = await withModels(cmd, async (m) =>
        m.registry.add(name, spec, { replace: o.replace, makeDefault: o.default }),
      );
      await auditModel(cmd, "model.add", name, {
        kind: entry.kind,
        ...(entry.kind === "remote" ? { baseURL: entry.baseURL } : { path: entry.path }),
      });
      if (o.json) printJson(describeEntry(entry));
      else process.stdout.write(`added model ${entry.name} (${entry.kind}${entry.isDefault ? ", default" : ""})\n`);
    }),
  );

  withHome(models.command("list").description("registered models").option("--json", "print JSON")).action(
    action(async (o: { json?: boolean }, cmd: Command) => {
      const list = await withModels(cmd, async (m) => m.registry.list());
      if (o.json) return printJson({ models: list.map(describeEntry) });
      if (list.length === 0) {
        process.stdout.write(
          "no models yet — `dajian pull hf:ORG/REPO/FILE.gguf` or `dajian models add NAME --provider deepseek`\n",
        );
        return;
      }
      printTable(
        list.map((e) => ({
          name: e.name + (e.isDefault ? " *" : ""),
          kind: e.kind,
          where:
            e.kind === "local"
              ? e.path + (e.adapters?.length ? ` +${e.adapters.length} LoRA` : "")
              : `${e.baseURL} (${e.model})`,
          origin: e.origin,
        })),
      );
    }),
  );

  withHome(
    models
      .command("rm <name>")
      .description("remove a registered model (the GGUF file stays on disk)")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      await withModels(cmd, async (m) => m.registry.remove(name));
      await auditModel(cmd, "model.remove", name);
      if (o.json) printJson({ removed: name });
      else process.stdout.write(`removed model ${name}\n`);
    }),
  );

  withHome(
    models.command("default <name>").description("make a model the default chat model").option("--json", "print JSON"),
  ).action(
    action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      await withModels(cmd, async (m) => m.registry.setDefault(name));
      await auditModel(cmd, "model.default", name);
      if (o.json) printJson({ default: name });
      else process.stdout.write(`default model is now ${name}\n`);
    }),
  );

  withHome(
    models
      .command("test <name>")
      .description("one short generation: prints backend, latency and tokens")
      .option("--prompt <text>", "what to ask", "Say hello in one short sentence.")
      .option("--max-tokens <n>", "tokens to generate", "16")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, o: { prompt: string; maxTokens: string; json?: boolean }, cmd: Command) => {
      const r = await withModels(cmd, async (m) => {
        const t0 = performance.now();
        const model = await m.raw(name);
        const loadMs = performance.now() - t0;
        const t1 = performance.now();
        let ttft: number | undefined;
        let text = "";
        let usage = { promptTokens: 0, completionTokens: 0 };
        const chat = await m.chat(name);
        for await (const c of chat!.stream([{ role: "user", content: o.prompt }], {
          maxTokens: posInt("--max-tokens", o.maxTokens),
        })) {
          if (c.type === "delta") {
            ttft ??= performance.now() - t1;
            text += c.text;
          } else usage = c.result.usage;
        }
        const totalMs = performance.now() - t1;
        const genMs = ttft !== undefined ? totalMs - ttft : totalMs;
        return {
          model: name,
          backend: model instanceof LocalChatModel ? model.backend : "remote",
          chatTemplate: model instanceof LocalChatModel ? model.chatTemplate : undefined,
          contextSize: model.contextSize,
          loadMs: Math.round(loadMs),
          ttftMs: ttft !== undefined ? Math.round(ttft) : undefined,
          totalMs: Math.round(totalMs),
          promptTokens: usage.promptTokens,
          completionTokens: usage.completionTokens,
          tokensPerSecond:
            usage.completionTokens > 1 && genMs > 0
              ? Number(((usage.completionTokens - 1) / (genMs / 1000)).toFixed(1))
              : undefined,
          text,
        };
      });
      if (o.json) return printJson(r);
      process.stdout.write(
        `${r.model}: ok on ${r.backend}${r.chatTemplate ? ` (template ${r.chatTemplate})` : ""}, context ${r.contextSize}\n` +
          `  load ${r.loadMs} ms · first token ${r.ttftMs ?? "-"} ms · total ${r.totalMs} ms · ${r.promptTokens} prompt + ${r.completionTokens} completion tokens` +
          `${r.tokensPerSecond !== undefined ? ` · ${r.tokensPerSecond} tok/s` : ""}\n  → ${JSON.stringify(r.text)}\n`,
      );
    }),
  );

  withHome(
    program
      .command("pull <ref>")
      .description("download a GGUF (hf:ORG/REPO/FILE.gguf via $HF_ENDPOINT, or a URL), resume, verify, register")
      .option("--sha256 <hex>", "expected SHA-256 (mismatch deletes the file)")
      .option("--name <name>", "registry name (default: the file name without .gguf)")
      .option("--json", "print JSON"),
  ).action(
    action(async (ref: string, o: { sha256?: string; name?: string; json?: boolean }, cmd: Command) => {
      const bar = terminalProgress();
      const home = homeOf(cmd);
      applyOutboundConfig(home);
      const db = openHomeDb(home);
      let ended = false;
      try {
        const r = await pullModel({ home, db, ref, sha256: o.sha256, name: o.name, onProgress: bar });
        bar.end();
        ended = true;
        await auditModel(cmd, "model.pull", r.name, { source: ref, sha256: r.sha256, bytes: r.bytes });
        if (o.json)
          printJson({
            name: r.name,
            path: r.path,
            bytes: r.bytes,
            sha256: r.sha256,
            resumedFrom: r.resumedFrom,
            attempts: r.attempts,
          });
        else
          process.stdout.write(
            `pulled ${r.name}: ${r.path} (${(r.bytes / 1048576).toFixed(1)} MiB${r.resumedFrom ? `, resumed at ${(r.resumedFrom / 1048576).toFixed(1)} MiB` : ""})\nsha256 ${r.sha256}\n`,
          );
      } finally {
        if (!ended) bar.end(); // leave the bar's line before the error message
        db.close();
      }
    }),
  );

  withHome(
    program
      .command("generate <model> <prompt>")
      .description("generate text with a registered model or a .gguf path (streams to stdout)")
      .option("--max-tokens <n>", "tokens to generate", "256")
      .option("--temperature <t>", "sampling temperature (0 = greedy)")
      .option("--top-p <p>", "nucleus sampling")
      .option("--seed <n>", "sampling seed")
      .option("--stop <text>", "stop sequence (repeatable)", collect)
      .option("--system <text>", "system message")
      .option("--json-schema <file>", "constrain the output to this JSON schema")
      .option("--threads <n>", "CPU threads when MODEL is a .gguf path")
      .option("--json", "print one JSON object instead of streaming"),
  ).action(
    action(async (ref: string, prompt: string, o: Record<string, any>, cmd: Command) => {
      let schema: Record<string, unknown> | undefined;
      if (o.jsonSchema) {
        try {
          schema = JSON.parse(readFileSync(o.jsonSchema, "utf8"));
        } catch (err) {
          throw new DajianError(
            "invalid_input",
            `cannot read JSON schema ${o.jsonSchema}: ${(err as Error).message}`,
            "pass a file with a JSON schema object",
          );
        }
      }
      const opts: GenerateOptions = {
        maxTokens: posInt("--max-tokens", o.maxTokens),
        temperature: num("--temperature", o.temperature),
        topP: num("--top-p", o.topP),
        seed: o.seed === undefined ? undefined : Number(o.seed),
        stop: o.stop,
        jsonSchema: schema,
      };
      const messages: ChatMessage[] = [
        ...(o.system ? [{ role: "system" as const, content: o.system }] : []),
        { role: "user", content: prompt },
      ];
      await withModels(cmd, async (m) => {
        const model = await openByNameOrPath(m, ref, { threads: posInt("--threads", o.threads) });
        try {
          if (o.json) {
            const r = await model.chat(messages, opts);
            printJson({ model: model.name, text: r.text, finishReason: r.finishReason, usage: r.usage });
            return;
          }
          for await (const c of model.stream(messages, opts)) {
            if (c.type === "delta") process.stdout.write(c.text);
            else process.stdout.write("\n");
          }
        } finally {
          if (model instanceof LocalChatModel && !m.registry.get(ref)) await model.dispose();
        }
      });
    }),
  );
}
