// `dajian pull`: fetch a GGUF over HTTP(S) into <home>/models, resuming a partial `.part` file with Range,
// verifying SHA-256, checking the GGUF header with the bounded reader, then registering the model.
// Everything goes through the hardened outbound client (SSRF guard, proxy env, credentials dropped on redirects
// to another host). A file only gets its final name once complete and verified: no half-written state.
import { createHash, type Hash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { open, rename, rm, truncate } from "node:fs/promises";
import { basename, join } from "node:path";
import { DajianError, isDajianError } from "../core/errors.js";
import { ensureHome } from "../core/home.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import { safeFetch } from "../core/outbound.js";
import { readGgufHeader } from "../gguf/reader.js";
import type { SqliteDb } from "../store/sqlite.js";
import { resolveCatalogRef } from "./catalog.js";
import { ModelRegistry, checkModelName, type ModelEntry } from "./registry.js";
import type { FetchLike } from "./remote.js";

export interface PullSource {
  url: string;
  fileName: string;
  /** Send $HF_TOKEN (Hugging Face and its mirrors only). */
  huggingFace: boolean;
}

/** `hf:ORG/REPO[@REV]/PATH/FILE.gguf` → $HF_ENDPOINT/ORG/REPO/resolve/REV/PATH/FILE.gguf; URLs pass through. */
export function resolvePullRef(ref: string, env: NodeJS.ProcessEnv = process.env): PullSource {
  if (ref.startsWith("hf:")) {
    const parts = ref.slice(3).split("/").filter(Boolean);
    if (parts.length < 3 || parts.some((p) => p === "." || p === ".."))
      throw new DajianError(
        "invalid_input",
        `bad Hugging Face ref "${ref}"`,
        "use hf:ORG/REPO/FILE.gguf, e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf",
      );
    const [org, repoRev, ...file] = parts;
    const [repo, rev = "main"] = repoRev.split("@");
    const endpoint = (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
    const path = [org, repo, "resolve", rev, ...file].map(encodeURIComponent).join("/");
    return { url: `${endpoint}/${path}`, fileName: safeFileName(file[file.length - 1]), huggingFace: true };
  }
  let u: URL;
  try {
    u = new URL(ref);
  } catch {
    throw new DajianError(
      "invalid_input",
      `"${ref}" is neither a catalog name, hf:ORG/REPO/FILE.gguf nor a URL`,
      "see `dajian models catalog` for names; for a file already on disk use `dajian models add NAME --gguf PATH`",
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new DajianError(
      "invalid_input",
      `unsupported URL scheme ${u.protocol}`,
      "use an http(s):// URL or hf:ORG/REPO/FILE.gguf",
    );
  return {
    url: u.toString(),
    fileName: safeFileName(decodeURIComponent(basename(u.pathname)) || "model.gguf"),
    huggingFace: false,
  };
}

function safeFileName(name: string): string {
  let n = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "");
  if (!n) n = "model";
  if (!n.toLowerCase().endsWith(".gguf")) n += ".gguf";
  return n.slice(-200);
}

/** Model name from a file name: the stem, squeezed into the registry's alphabet. */
export function defaultModelName(fileName: string): string {
  const stem = fileName
    .replace(/\.gguf$/i, "")
    .replace(/[^A-Za-z0-9._:-]/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "");
  return (stem || "model").slice(0, 64);
}

async function hashFile(path: string, h: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
}

export interface PullOptions {
  home: string;
  db: SqliteDb;
  ref: string;
  sha256?: string;
  name?: string;
  fetch?: FetchLike;
  env?: NodeJS.ProcessEnv;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /** Connection attempts before giving up (each resumes where the last stopped). */
  maxAttempts?: number;
  /** Abort an attempt when no byte arrives for this long. */
  idleTimeoutMs?: number;
  /** Allow loopback/private targets (tests, an internal mirror); else config outbound.allowHosts decides. */
  allowPrivate?: boolean;
  /** Wait between attempts (ms × attempt). */
  retryDelayMs?: number;
}

export interface PullResult {
  name: string;
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes already on disk when the first attempt started (resumed from a previous run). */
  resumedFrom: number;
  attempts: number;
  entry: ModelEntry;
}

function parseContentRange(v: string | null): { start: number; total?: number } | undefined {
  const m = v ? /^bytes\s+(\d+)-\d+\/(\d+|\*)$/i.exec(v.trim()) : null;
  return m ? { start: Number(m[1]), total: m[2] === "*" ? undefined : Number(m[2]) } : undefined;
}

export async function pullModel(o: PullOptions): Promise<PullResult> {
  const env = o.env ?? process.env;
  // Catalog names (`qwen2.5-0.5b-instruct`, `NAME:Q8_0`) resolve to their hf: source and known checksum.
  const fromCatalog = o.ref.startsWith("hf:") || /^[a-z]+:\/\//i.test(o.ref) ? undefined : resolveCatalogRef(o.ref);
  const src = resolvePullRef(fromCatalog?.url ?? o.ref, env);
  const want = (o.sha256 ?? fromCatalog?.sha256)?.toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want))
    throw new DajianError("invalid_input", "--sha256 must be 64 hex digits", "copy the SHA-256 from the model page");
  const name = o.name ?? fromCatalog?.name ?? defaultModelName(src.fileName);
  checkModelName(name);
  const registry = new ModelRegistry(o.db, o.home, env);
  const existing = registry.get(name);
  const paths = ensureHome(o.home);
  const dest = join(paths.models, src.fileName);
  if (existing && !(existing.kind === "local" && existing.path === dest))
    throw new DajianError(
      "already_exists",
      `model "${name}" already exists`,
      "pick another name with --name, or `dajian models rm` it first",
    );
  const part = `${dest}.part`;
  const fetchFn = o.fetch ?? safeFetch;
  const progress = o.onProgress ?? noProgress;
  const maxAttempts = o.maxAttempts ?? 5;
  const idleMs = o.idleTimeoutMs ?? 60_000;

  let hash = createHash("sha256");
  let have = 0;
  let resumedFrom = 0;
  let attempts = 0;
  if (existsSync(dest)) {
    // Already complete from an earlier pull: verify and (re)register instead of downloading again.
    await hashFile(dest, hash);
    have = statSync(dest).size;
  } else {
    if (existsSync(part)) {
      await hashFile(part, hash);
      have = resumedFrom = statSync(part).size;
    }
    let total: number | undefined;
    let lastErr: unknown;
    while (true) {
      if (o.signal?.aborted) throw o.signal.reason;
      if (attempts >= maxAttempts)
        throw new DajianError(
          "upstream",
          `download of ${src.url} failed after ${attempts} attempts: ${(lastErr as Error)?.message ?? lastErr}`,
          "run the same `dajian pull` again to resume",
          { cause: lastErr },
        );
      attempts++;
      const headers: Record<string, string> = {};
      if (have > 0) headers.range = `bytes=${have}-`;
      if (src.huggingFace && env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
      const ctl = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => ctl.abort(new DajianError("upstream", `no data for ${idleMs} ms`, "check the network")),
          idleMs,
        );
      };
      const onAbort = () => ctl.abort(o.signal!.reason);
      o.signal?.addEventListener("abort", onAbort, { once: true });
      arm();
      try {
        const res = await fetchFn(src.url, {
          headers,
          signal: ctl.signal,
          timeoutMs: 7 * 24 * 3600_000,
          allowPrivate: o.allowPrivate ?? false,
        });
        if (res.status === 416 && have > 0) {
          // Range past the end: either the .part is already complete or the remote file changed.
          const cr = parseContentRange(res.headers.get("content-range"));
          await res.body?.cancel();
          if (cr === undefined || cr.total === undefined || cr.total !== have) {
            await truncate(part, 0);
            hash = createHash("sha256");
            have = 0;
            continue;
          }
          total = have;
          break;
        }
        if (!res.ok) {
          await res.body?.cancel();
          const s = res.status;
          if (s === 404)
            throw new DajianError(
              "not_found",
              `${src.url} does not exist (404)`,
              "check the org/repo/file name (file names are case-sensitive)",
            );
          if (s === 401 || s === 403)
            throw new DajianError(
              "unauthorized",
              `${src.url} needs authorisation (${s})`,
              src.huggingFace ? "accept the model's licence on its page and set HF_TOKEN" : "check the URL",
            );
          lastErr = new DajianError("upstream", `server answered ${s}`, "retry later");
          if (s === 429 || s >= 500) {
            await new Promise((r) => setTimeout(r, (o.retryDelayMs ?? 1000) * attempts));
            continue;
          }
          throw lastErr;
        }
        let append = false;
        if (res.status === 206) {
          const cr = parseContentRange(res.headers.get("content-range"));
          if (!cr || cr.start !== have) {
            // A range we did not ask for: start over rather than splice mismatched bytes.
            await res.body?.cancel();
            await truncate(part, 0).catch(() => {});
            hash = createHash("sha256");
            have = 0;
            lastErr = new DajianError("upstream", "server sent a mismatched range", "retry");
            continue;
          }
          append = true;
          total = cr.total;
        } else {
          // 200: the server ignored Range (or we asked for none) — the body is the whole file.
          const len = res.headers.get("content-length");
          total = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
          if (have > 0) {
            hash = createHash("sha256");
            have = 0;
          }
        }
        const fh = await open(part, append ? "a" : "w");
        try {
          progress({ phase: "bytes", done: have, total, item: src.fileName });
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            arm();
            await fh.write(chunk);
            hash.update(chunk);
            have += chunk.byteLength;
            progress({ phase: "bytes", done: have, total, item: src.fileName });
          }
        } finally {
          await fh.close();
        }
        if (total !== undefined && have !== total) {
          lastErr = new DajianError("upstream", `connection closed at ${have} of ${total} bytes`, "retry");
          continue;
        }
        break;
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        if (isDajianError(err) && ["not_found", "unauthorized", "forbidden", "invalid_input"].includes(err.code))
          throw err;
        lastErr = ctl.signal.aborted && ctl.signal.reason instanceof Error ? ctl.signal.reason : err;
        // The bytes that did arrive stay in .part (hash state matches them); the next attempt resumes there.
        await new Promise((r) => setTimeout(r, (o.retryDelayMs ?? 1000) * attempts));
      } finally {
        clearTimeout(timer);
        o.signal?.removeEventListener("abort", onAbort);
      }
    }
  }
  const file = existsSync(dest) ? dest : part;
  const got = hash.digest("hex");
  if (want !== undefined && got !== want) {
    await rm(file, { force: true });
    throw new DajianError(
      "corrupt",
      `SHA-256 mismatch for ${src.fileName}: expected ${want}, got ${got}`,
      "the download was deleted; check --sha256 and the source, then pull again",
    );
  }
  try {
    readGgufHeader(file);
  } catch (err) {
    await rm(file, { force: true });
    throw new DajianError(
      "corrupt",
      `${src.url} is not a valid GGUF model: ${(err as Error).message}`,
      "check the URL points at a .gguf file (not an HTML page or a safetensors file)",
      { cause: err },
    );
  }
  if (file === part) await rename(part, dest);
  const entry = registry.add(name, { kind: "local", path: dest, source: o.ref, sha256: got }, { replace: true });
  return { name, path: dest, bytes: have, sha256: got, resumedFrom, attempts, entry };
}
