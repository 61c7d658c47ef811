// Air-gapped model transfer. `importModel` takes a GGUF file (or a folder written by `exportModel`), validates it
// with dajian's bounded GGUF reader (every count, length and offset checked against the file size, so a crafted
// header fails cleanly before llama.cpp ever parses it), copies it into <home>/models/<name>/ while hashing,
// records SHA-256, architecture, quantization, context length and chat template in a manifest, and registers it.
// `exportModel` writes <dir>/<file>.gguf + manifest.json that `importModel(dir)` on another machine accepts.
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, join, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { homePaths } from "../core/home.js";
import { type ProgressFn, noProgress } from "../core/progress.js";
import { VERSION } from "../core/version.js";
import { GgmlType, type GgufFile, ggmlTypeName, metaNumber, metaString, readGgufHeader } from "../gguf/index.js";
import { openHomeDb } from "../store/sqlite.js";
import { QUANT_FTYPES } from "./quantize.js";
import { ModelRegistry, checkModelName } from "./registry.js";

export const MANIFEST_FORMAT = "dajian-model/1";

export interface ModelManifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  /** GGUF file name inside the folder (a plain name, never a path). */
  file: string;
  sha256: string;
  sizeBytes: number;
  architecture: string;
  /** llama.cpp file type (quantization), e.g. "Q4_K_M", "F16". */
  quantization: string;
  contextLength?: number;
  parameters: number;
  chatTemplate?: string;
  /** `general.name` from the GGUF. */
  modelName?: string;
  source?: string;
  createdAt: string;
  dajianVersion: string;
}

export interface GgufSummary {
  architecture: string;
  quantization: string;
  contextLength?: number;
  parameters: number;
  chatTemplate?: string;
  modelName?: string;
  tensors: number;
}

const FTYPE_NAMES = new Map<number, string>(Object.entries(QUANT_FTYPES).map(([k, v]) => [v, k]));
Object.entries({ Q4_1: 3, Q5_1: 9, Q2_K: 10, Q3_K_S: 11, Q3_K_L: 13, IQ4_XS: 30, IQ4_NL: 25 }).forEach(([k, v]) =>
  FTYPE_NAMES.set(v, k),
);

/** What a GGUF is, from its header: architecture, quantization (general.file_type, else the dominant tensor type) … */
export function summarizeGguf(file: GgufFile): GgufSummary {
  const architecture = metaString(file, "general.architecture");
  if (!architecture)
    throw new DajianError(
      "invalid_input",
      "GGUF has no general.architecture",
      "this is not a model file (vocab-only or adapter?); import a model GGUF",
    );
  if (file.tensors.length === 0)
    throw new DajianError("invalid_input", "GGUF has no tensors", "import a complete model, not a vocab-only file");
  const type = metaString(file, "general.type");
  if (type === "adapter")
    throw new DajianError(
      "invalid_input",
      "this GGUF is a LoRA adapter, not a model",
      "attach it to a base model with `dajian models add --adapter`",
    );
  let quantization: string | undefined;
  const ft = metaNumber(file, "general.file_type");
  if (ft !== undefined) quantization = FTYPE_NAMES.get(ft) ?? `ftype${ft}`;
  if (!quantization) {
    // Dominant 2-D tensor type by bytes.
    const by = new Map<GgmlType, number>();
    for (const t of file.tensors) if (t.dims.length >= 2) by.set(t.type, (by.get(t.type) ?? 0) + t.size);
    const top = [...by.entries()].sort((a, b) => b[1] - a[1])[0];
    quantization = top ? ggmlTypeName(top[0]) : "unknown";
  }
  return {
    architecture,
    quantization,
    contextLength: metaNumber(file, `${architecture}.context_length`),
    parameters: file.tensors.reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1), 0),
    chatTemplate: metaString(file, "tokenizer.chat_template"),
    modelName: metaString(file, "general.name"),
    tensors: file.tensors.length,
  };
}

/** Copy `src` to `dst` (via a temp file + fsync + rename) while hashing; returns the SHA-256 hex. */
async function copyHashing(src: string, dst: string, onProgress: ProgressFn): Promise<string> {
  const total = statSync(src).size;
  const tmp = `${dst}.part-${process.pid}`;
  const hash = createHash("sha256");
  const fd = openSync(tmp, "w");
  let done = 0;
  try {
    for await (const chunk of createReadStream(src, { highWaterMark: 4 * 1024 * 1024 })) {
      const b = chunk as Buffer;
      hash.update(b);
      for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
      done += b.length;
      onProgress({ phase: "bytes", done, total });
    }
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, dst);
  return hash.digest("hex");
}

export async function sha256File(path: string, onProgress: ProgressFn = noProgress): Promise<string> {
  const total = statSync(path).size;
  const hash = createHash("sha256");
  let done = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onProgress({ phase: "bytes", done, total });
  }
  return hash.digest("hex");
}

/** The manifest written beside an imported or exported GGUF (one shape for both directions). */
function buildManifest(
  name: string,
  dst: string,
  sha256: string,
  summary: GgufSummary,
  source: string | undefined,
): ModelManifest {
  return {
    format: MANIFEST_FORMAT,
    name,
    file: basename(dst),
    sha256,
    sizeBytes: statSync(dst).size,
    architecture: summary.architecture,
    quantization: summary.quantization,
    contextLength: summary.contextLength,
    parameters: summary.parameters,
    chatTemplate: summary.chatTemplate,
    modelName: summary.modelName,
    source,
    createdAt: new Date().toISOString(),
    dajianVersion: VERSION,
  };
}

function defaultName(summary: GgufSummary, file: string): string {
  const raw = (summary.modelName || basename(file).replace(/\.gguf$/i, "")).toLowerCase();
  const clean = raw
    .replace(/[^a-z0-9._:-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 64);
  return clean || "imported-model";
}

/** The one place imported models enter the model registry (H3a's ModelRegistry). */
export function registerImportedModel(home: string, name: string, path: string, sha256: string, source: string): void {
  const db = openHomeDb(home);
  try {
    new ModelRegistry(db, home).add(name, { kind: "local", path, sha256, source });
  } finally {
    db.close();
  }
}

function modelRegistered(home: string, name: string): boolean {
  const db = openHomeDb(home);
  try {
    return new ModelRegistry(db, home).get(name) !== undefined;
  } finally {
    db.close();
  }
}

function readManifest(dir: string): ModelManifest {
  const p = join(dir, "manifest.json");
  if (!existsSync(p))
    throw new DajianError(
      "invalid_input",
      `${dir} has no manifest.json`,
      "import a .gguf file, or a folder written by `dajian models export`",
    );
  let m: ModelManifest;
  try {
    m = JSON.parse(readFileSync(p, "utf8")) as ModelManifest;
  } catch (err) {
    throw new DajianError("corrupt", `${p} is not valid JSON`, "re-export the model", { cause: err });
  }
  if (m.format !== MANIFEST_FORMAT || typeof m.file !== "string" || typeof m.sha256 !== "string")
    throw new DajianError(
      "corrupt",
      `${p} is not a dajian model manifest`,
      "re-export the model with `dajian models export`",
    );
  // The file name comes from another machine: never let it point outside the folder.
  if (basename(m.file) !== m.file || m.file.startsWith(".") || !/\.gguf$/i.test(m.file))
    throw new DajianError("corrupt", `manifest names an unsafe file "${m.file}"`, "re-export the model");
  if (!/^[0-9a-f]{64}$/.test(m.sha256))
    throw new DajianError("corrupt", "manifest sha256 is not a SHA-256 hex digest", "re-export the model");
  return m;
}

export interface ImportOptions {
  name?: string;
  onProgress?: ProgressFn;
}

export interface ImportResult {
  name: string;
  path: string;
  manifest: ModelManifest;
}

export async function importModel(home: string, src: string, opts: ImportOptions = {}): Promise<ImportResult> {
  const input = resolve(src);
  if (!existsSync(input))
    throw new DajianError("not_found", `${input} does not exist`, "check the path to the .gguf file or export folder");
  let file = input;
  let expected: ModelManifest | undefined;
  if (statSync(input).isDirectory()) {
    expected = readManifest(input);
    file = join(input, expected.file);
    if (!existsSync(file))
      throw new DajianError("not_found", `${expected.file} is missing from ${input}`, "copy the whole export folder");
    if (statSync(file).size !== expected.sizeBytes)
      throw new DajianError(
        "corrupt",
        `${expected.file} is ${statSync(file).size} bytes, manifest says ${expected.sizeBytes}`,
        "the copy is incomplete; copy the folder again",
      );
  }
  const summary = summarizeGguf(readGgufHeader(file));
  const name = opts.name ?? expected?.name ?? defaultName(summary, file);
  checkModelName(name);
  if (modelRegistered(home, name))
    throw new DajianError(
      "already_exists",
      `model "${name}" already exists`,
      `pick another --name or remove it with \`dajian models rm ${name}\``,
    );
  const dir = join(homePaths(home).models, name);
  if (existsSync(dir))
    throw new DajianError("already_exists", `${dir} already exists`, `pick another --name or delete that folder`);
  mkdirSync(dir, { recursive: true });
  try {
    const fileName = basename(file);
    const dst = join(dir, fileName);
    const sha256 = await copyHashing(file, dst, opts.onProgress ?? noProgress);
    if (expected && expected.sha256 !== sha256)
      throw new DajianError(
        "corrupt",
        `SHA-256 of ${fileName} is ${sha256}, manifest says ${expected.sha256}`,
        "the file was altered or damaged in transit; copy it again",
      );
    const manifest = buildManifest(name, dst, sha256, summary, expected?.source ?? `import:${file}`);
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    registerImportedModel(home, name, dst, sha256, manifest.source!);
    return { name, path: dst, manifest };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true }); // no half-imported model left behind
    throw err;
  }
}

export interface ExportOptions {
  onProgress?: ProgressFn;
}

/** Export a registered local model to `outDir` (created; must not already hold the file). */
export async function exportModel(
  home: string,
  name: string,
  outDir: string,
  opts: ExportOptions = {},
): Promise<{ dir: string; manifest: ModelManifest }> {
  const db = openHomeDb(home);
  let entry;
  try {
    entry = new ModelRegistry(db, home).require(name);
  } finally {
    db.close();
  }
  if (entry.kind !== "local")
    throw new DajianError(
      "invalid_input",
      `model "${name}" is a remote API model`,
      "only local GGUF models can be exported",
    );
  const src = entry.path;
  if (!existsSync(src))
    throw new DajianError("not_found", `GGUF of "${name}" is missing: ${src}`, "re-import or pull the model");
  const summary = summarizeGguf(readGgufHeader(src));
  const dir = resolve(outDir);
  const fileName = basename(src);
  mkdirSync(dir, { recursive: true });
  const dst = join(dir, fileName);
  if (existsSync(dst) || existsSync(join(dir, "manifest.json")))
    throw new DajianError("already_exists", `${dir} already holds an export`, "export into an empty folder");
  const sha256 = await copyHashing(src, dst, opts.onProgress ?? noProgress);
  if (entry.sha256 && entry.sha256 !== sha256) {
    rmSync(dst, { force: true });
    throw new DajianError(
      "corrupt",
      `${src} no longer matches its recorded SHA-256`,
      "the local file changed or is damaged; pull or import it again",
    );
  }
  const manifest = buildManifest(name, dst, sha256, summary, entry.source);
  // manifest last: a folder without one is visibly incomplete and `import` refuses it
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  return { dir, manifest };
}
