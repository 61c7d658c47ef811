// Multipart uploads streamed straight to disk (never buffered whole in memory), each file capped at
// ingest.maxFileBytes. A file over the cap, or a broken stream, leaves nothing behind.
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { FastifyRequest } from "fastify";
import { DajianError } from "../core/errors.js";

export interface SavedUpload {
  path: string;
  /** Display name: the client's file name, reduced to a safe base name. */
  name: string;
  bytes: number;
}

/** Reduce a client-supplied file name to a safe base name (no directories, no control characters). */
export function safeFileName(raw: string): string {
  const base = raw.split(/[\\/]/).pop() ?? "";
  let name = base.replace(/[\u0000-\u001f\u007f]/g, "").trim();
  while (Buffer.byteLength(name) > 200) name = name.slice(0, -1);
  if (!name || name === "." || name === "..")
    throw new DajianError(
      "invalid_input",
      `unusable file name '${raw}'`,
      "give the file a normal name and upload again",
    );
  return name;
}

/** Save every file part of a multipart request under `dir`. On any failure all saved files are removed. */
export async function saveUploads(req: FastifyRequest, dir: string, maxFileBytes: number): Promise<SavedUpload[]> {
  if (!req.isMultipart())
    throw new DajianError(
      "unsupported",
      "upload must be multipart/form-data",
      "send the file as a form field (e.g. curl -F file=@doc.pdf)",
    );
  const saved: SavedUpload[] = [];
  const written: string[] = [];
  await mkdir(dir, { recursive: true });
  try {
    for await (const part of req.parts()) {
      if (part.type !== "file") continue;
      const name = safeFileName(part.filename);
      const path = join(dir, `${randomUUID()}-${name}`);
      written.push(path);
      let bytes = 0;
      part.file.on("data", (c: Buffer) => (bytes += c.length));
      try {
        await pipeline(part.file, createWriteStream(path, { flags: "wx" }));
      } catch (err) {
        throw tooLarge(err, name, maxFileBytes) ?? err;
      }
      if (part.file.truncated) throw tooLarge({ code: "FST_REQ_FILE_TOO_LARGE" }, name, maxFileBytes);
      saved.push({ path, name, bytes });
    }
  } catch (err) {
    await Promise.all(written.map((p) => rm(p, { force: true })));
    throw tooLarge(err, "", maxFileBytes) ?? err;
  }
  if (saved.length === 0)
    throw new DajianError("invalid_input", "no file in the upload", "attach at least one file field");
  return saved;
}

function tooLarge(err: unknown, name: string, max: number): DajianError | undefined {
  const code = (err as { code?: string })?.code;
  if (code === "FST_REQ_FILE_TOO_LARGE")
    return new DajianError(
      "too_large",
      `file ${name ? `'${name}' ` : ""}is larger than the upload limit of ${max} bytes`,
      "split the file, or raise ingest.maxFileBytes in config.json (DAJIAN_MAX_FILE_BYTES)",
    );
  if (code === "FST_FILES_LIMIT")
    return new DajianError("too_large", "too many files in one upload", "upload at most 20 files per request");
  if (code === "FST_PARTS_LIMIT" || code === "FST_FIELDS_LIMIT")
    return new DajianError("too_large", "too many form fields", "send only file fields");
  if (code === "FST_INVALID_MULTIPART_CONTENT_TYPE")
    return new DajianError("unsupported", "upload must be multipart/form-data", "send the file as a form field");
  return undefined;
}
