// App API under /api, used by the web page (nothing private: anything the page does, a script can do).
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { extname } from "node:path";
import type { Answer } from "../answer/types.js";
import { DajianError } from "../core/errors.js";
import { VERSION } from "../core/version.js";
import type { Handler, HandlerTable, RequestContext, ServerContext } from "./context.js";
import { mapError } from "./errors.js";
import type { JobView } from "./jobs.js";
import { openSse, requestSignal } from "./sse.js";
import { saveUploads } from "./upload.js";

type KbParams = { name: string };
type DocParams = { name: string; doc: string };

const ADD_MODEL_HINT =
  "no generative model is configured, so answers quote the best-matching passages. Add one with " +
  "`dajian pull hf:ORG/REPO/FILE.gguf` or a provider key (`dajian models add …`), then restart `dajian serve`.";

async function requireKb(sc: ServerContext, name: string) {
  const kb = (await sc.services.kbs.list()).find((k) => k.name === name);
  if (!kb)
    throw new DajianError(
      "not_found",
      `knowledge base '${name}' not found`,
      `create it with \`dajian kb create ${name}\` or POST /api/kbs`,
    );
  return kb;
}

// Public: the sign-in page reads `sso` to decide whether to offer single sign-on.
const health: Handler = async (_req, _reply, _rc, sc) => ({
  ok: true,
  version: VERSION,
  sso: Boolean(sc.config.server.auth && sc.security.oidc),
});

const info: Handler = async (_req, _reply, _rc, sc) => {
  const model = await sc.services.models.defaultChat();
  return {
    version: VERSION,
    mode: model ? "generative" : "extractive",
    model: model?.name ?? null,
    auth: sc.config.server.auth,
    limits: { maxFileBytes: sc.config.ingest.maxFileBytes, maxBodyBytes: sc.config.server.maxBodyBytes },
    ...(model ? {} : { hint: ADD_MODEL_HINT }),
  };
};

const listKbs: Handler = async (_req, _reply, rc, sc) => {
  const all = await sc.services.kbs.list();
  const visible = new Set(
    sc.security.visibleKbs(
      rc.principal,
      all.map((k) => k.name),
    ),
  );
  return { kbs: all.filter((k) => visible.has(k.name)) };
};

const createKb: Handler = async (req, reply, rc, sc) => {
  const { name, description } = req.body as { name: string; description?: string };
  if (!/^[\p{L}\p{N}][\p{L}\p{N}_.-]*$/u.test(name))
    throw new DajianError(
      "invalid_input",
      `invalid knowledge base name '${name}'`,
      "use letters, digits, '-', '_' or '.', starting with a letter or digit",
    );
  const kb = await sc.services.kbs.create(name, description);
  sc.security.audit({ principal: rc.principal, action: "kb.create", route: rc.route.id, target: name, ok: true });
  reply.code(201);
  return { kb };
};

const deleteKb: Handler = async (req, _reply, rc, sc) => {
  const { name } = req.params as KbParams;
  await requireKb(sc, name);
  await sc.services.kbs.delete(name);
  sc.security.audit({ principal: rc.principal, action: "kb.delete", route: rc.route.id, target: name, ok: true });
  return { deleted: name };
};

const listDocs: Handler = async (req, _reply, rc, sc) => {
  const { name } = req.params as KbParams;
  await requireKb(sc, name);
  const allow = sc.security.documentFilter(rc.principal, name);
  const docs = await sc.services.kbs.documents(name);
  return { documents: allow ? docs.filter((d) => allow(d.id)) : docs };
};

const upload: Handler = async (req, reply, rc, sc) => {
  const { name } = req.params as KbParams;
  await requireKb(sc, name);
  const files = await saveUploads(req, sc.uploadDir, sc.config.ingest.maxFileBytes);
  const jobs = files.map((f) => sc.jobs.add(name, f.path, f.name, rc.principal.id));
  for (const f of files)
    sc.security.audit({
      principal: rc.principal,
      action: "document.upload",
      route: rc.route.id,
      target: `${name}/${f.name}`,
      ok: true,
    });
  reply.code(202);
  return { jobs: jobs.map((j, i) => ({ ...j, bytes: files[i].bytes })) };
};

const deleteDoc: Handler = async (req, _reply, rc, sc) => {
  const { name, doc } = req.params as DocParams;
  await requireKb(sc, name);
  await sc.services.kbs.removeDocument(name, doc);
  sc.security.audit({
    principal: rc.principal,
    action: "document.delete",
    route: rc.route.id,
    target: `${name}/${doc}`,
    ok: true,
  });
  return { deleted: doc };
};

const MIME: Record<string, string> = {
  ".pdf": "application/pdf",
  ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  ".csv": "text/csv",
  ".md": "text/markdown",
  ".txt": "text/plain",
  ".html": "text/plain", // never render uploaded HTML in our origin
  ".htm": "text/plain",
};

const download: Handler = async (req, reply, _rc, sc) => {
  const { name, doc } = req.params as DocParams;
  await requireKb(sc, name);
  const f = await sc.services.kbs.originalFile(name, doc);
  const st = await stat(f.path).catch(() => undefined);
  if (!st?.isFile())
    throw new DajianError("not_found", `original file of '${doc}' is missing`, "ingest the document again");
  const ascii = f.name.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
  reply
    .header("content-type", MIME[extname(f.name).toLowerCase()] ?? "application/octet-stream")
    .header("content-length", String(st.size))
    .header("content-disposition", `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(f.name)}`)
    .header("x-content-type-options", "nosniff");
  return reply.send(createReadStream(f.path));
};

const search: Handler = async (req, _reply, rc, sc) => {
  const { name } = req.params as KbParams;
  const body = req.body as { query: string; topK?: number; mode?: "hybrid" | "keyword" | "vector" };
  await requireKb(sc, name);
  const res = await sc.services.kbs.search(name, body.query, {
    topK: body.topK ?? 5,
    mode: body.mode,
    allowDocument: sc.security.documentFilter(rc.principal, name),
  });
  return { results: res.results.map((r) => ({ text: r.text, score: r.score, source: r.source })) };
};

const ask: Handler = async (req, reply, rc, sc) => {
  const { name } = req.params as KbParams;
  const body = req.body as {
    question: string;
    conversationId?: string;
    model?: string;
    topK?: number;
    stream?: boolean;
  };
  await requireKb(sc, name);
  const model = body.model ? await sc.services.models.chat(body.model) : await sc.services.models.defaultChat();
  const lease = await sc.security.admit(rc.principal, rc.route, {
    model: model?.name ?? "extractive",
    promptTokens: model ? await model.countTokens(body.question) : 0,
    maxTokens: model ? Math.floor(model.contextSize / 4) : 0,
  });
  const { signal, dispose } = requestSignal(reply, sc.generationTimeoutMs);
  let answer: Answer | undefined;
  const run = (onDelta?: (t: string) => void) =>
    sc.services.answers.ask({
      kb: name,
      question: body.question,
      conversationId: body.conversationId,
      owner: rc.principal.id,
      model,
      topK: body.topK,
      allowDocument: sc.security.documentFilter(rc.principal, name),
      gen: { principalId: rc.principal.id },
      onDelta,
      signal,
    });
  try {
    if (body.stream === false) return (answer = await run());
    const sse = openSse(reply);
    try {
      let chain = Promise.resolve();
      answer = await run((text) => {
        if (text) chain = chain.then(() => sse.send({ text }, "delta"));
      });
      await chain;
      await sse.send(answer, "answer");
    } catch (err) {
      if (!sse.closed) await sse.send(mapError(err).body, "error");
    } finally {
      sse.end();
    }
    return reply;
  } finally {
    dispose();
    lease.settle(answer?.usage ?? { promptTokens: 0, completionTokens: 0 });
  }
};

function jobOr404(sc: ServerContext, id: string): JobView {
  const j = sc.jobs.get(id);
  if (!j)
    throw new DajianError(
      "not_found",
      `job '${id}' not found`,
      "finished jobs are kept for the last 500 uploads; list the knowledge base's documents instead",
    );
  return j;
}

const getJob: Handler = async (req, _reply, _rc, sc) => jobOr404(sc, (req.params as { id: string }).id);

const jobEvents: Handler = async (req, reply, _rc, sc) => {
  const { id } = req.params as { id: string };
  jobOr404(sc, id);
  const sse = openSse(reply);
  await new Promise<void>((resolve) => {
    let unwatch: () => void = () => {};
    const stop = () => {
      unwatch();
      sse.end();
      resolve();
    };
    reply.raw.on("close", stop);
    unwatch = sc.jobs.watch(id, (j) => {
      void sse.send(j, j.status === "done" || j.status === "failed" ? "end" : "progress").then(() => {
        if (j.status === "done" || j.status === "failed") stop();
      });
    });
  });
  return reply;
};

const listConversations: Handler = async (req, _reply, rc, sc) => {
  const { kb } = req.query as { kb?: string };
  return { conversations: await sc.services.answers.listConversations(rc.principal.id, kb) };
};

/** Admins may open anyone's conversation; everyone else only their own (others' look missing). */
const ownerFilter = (rc: RequestContext) => (rc.principal.role === "admin" ? undefined : rc.principal.id);

const getConversation: Handler = async (req, _reply, rc, sc) =>
  sc.services.answers.getConversation((req.params as { id: string }).id, ownerFilter(rc));

const deleteConversation: Handler = async (req, _reply, rc, sc) => {
  const { id } = req.params as { id: string };
  await sc.services.answers.deleteConversation(id, ownerFilter(rc));
  return { deleted: id };
};

export const apiHandlers: HandlerTable = {
  "api.health": health,
  "api.info": info,
  "api.kbs.list": listKbs,
  "api.kbs.create": createKb,
  "api.kbs.delete": deleteKb,
  "api.docs.list": listDocs,
  "api.docs.upload": upload,
  "api.docs.delete": deleteDoc,
  "api.docs.download": download,
  "api.search": search,
  "api.ask": ask,
  "api.jobs.get": getJob,
  "api.jobs.events": jobEvents,
  "api.conversations.list": listConversations,
  "api.conversations.get": getConversation,
  "api.conversations.delete": deleteConversation,
};
