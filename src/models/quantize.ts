// `dajian quantize`: llama.cpp's own quantizer (`llama_model_quantize` in the libllama that node-llama-cpp ships),
// called through koffi — no Python, no self-built llama.cpp.
// It runs in a child process: llama.cpp logs one line per tensor on stderr, which becomes the progress bar;
// a crash inside the native quantizer cannot take the caller (e.g. the server) down; and a failed run leaves
// only a temp file that is removed — OUT appears (by rename) only when complete.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { type ProgressFn, noProgress } from "../core/progress.js";
import { readGgufHeader } from "../gguf/index.js";

/** llama_ftype values (include/llama.h) for the types `dajian quantize` offers. */
export const QUANT_FTYPES = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q8_0: 7,
  Q5_0: 8,
  Q3_K_M: 12,
  Q4_K_S: 14,
  Q4_K_M: 15,
  Q5_K_S: 16,
  Q5_K_M: 17,
  Q6_K: 18,
  BF16: 32,
} as const;

export type QuantType = keyof typeof QUANT_FTYPES;

export function parseQuantType(s: string): QuantType {
  const t = s.toUpperCase();
  if (!(t in QUANT_FTYPES))
    throw new DajianError(
      "invalid_input",
      `unknown quantization type "${s}"`,
      `use one of ${Object.keys(QUANT_FTYPES).join(", ")}`,
    );
  return t as QuantType;
}

/** Locate node-llama-cpp's prebuilt libllama for this platform (the CPU build; quantizing needs no GPU). */
export function findLlamaLibrary(): string {
  const req = createRequire(import.meta.url);
  // node-llama-cpp's exports hide package.json: walk up from its entry point to the package root.
  let nlcDir = dirname(req.resolve("node-llama-cpp"));
  while (!existsSync(join(nlcDir, "package.json")) && dirname(nlcDir) !== nlcDir) nlcDir = dirname(nlcDir);
  const plat = `${process.platform === "win32" ? "win" : process.platform === "darwin" ? "mac" : process.platform}-${process.arch}`;
  const nlcReq = createRequire(join(nlcDir, "package.json"));
  const candidates: string[] = [];
  try {
    // the platform package's exports hide package.json too; its main entry sits in dist/
    let p = dirname(nlcReq.resolve(`@node-llama-cpp/${plat}`));
    while (!existsSync(join(p, "bins")) && dirname(p) !== p) p = dirname(p);
    candidates.push(join(p, "bins", plat));
  } catch {
    /* platform package not installed */
  }
  candidates.push(join(nlcDir, "..", "@node-llama-cpp", plat, "bins", plat));
  candidates.push(join(nlcDir, "llama", "localBuilds"), join(nlcDir, "bins", plat));
  const pattern = /^(lib)?llama(\.v[\d.]+)?\.(so|dylib|dll)$/;
  for (const dir of candidates) {
    if (!existsSync(dir)) continue;
    const hit = readdirSync(dir).find((f) => pattern.test(f));
    if (hit) return join(dir, hit);
  }
  throw new DajianError(
    "not_found",
    `no prebuilt libllama for ${plat} in node-llama-cpp`,
    "reinstall dependencies (npm install) on a supported platform, or quantize on a linux-x64/mac machine",
  );
}

// The child: declares llama_model_quantize_params exactly as include/llama.h lays it out (koffi computes the
// C padding: 4 ints, 6 bools, 4 pointers, size_t → 64 bytes on 64-bit), takes llama.cpp's defaults and sets
// threads and ftype only.
const CHILD = String.raw`
const koffi = require(process.env.DAJIAN_KOFFI);
const [libPath, inp, out, ftype, nthread] = process.argv.slice(1);
const lib = koffi.load(libPath);
const Params = koffi.struct("llama_model_quantize_params", {
  nthread: "int32", ftype: "int", output_tensor_type: "int", token_embedding_type: "int",
  allow_requantize: "bool", quantize_output_tensor: "bool", only_copy: "bool", pure: "bool", keep_split: "bool", dry_run: "bool",
  imatrix: "void *", kv_overrides: "void *", tt_overrides: "void *", prune_layers: "void *", max_buf_size: "size_t",
});
if (koffi.sizeof(Params) !== 64) { process.stderr.write("DAJIAN_ABI params struct is " + koffi.sizeof(Params) + " bytes, expected 64\n"); process.exit(3); }
const defaults = lib.func("llama_model_quantize_params llama_model_quantize_default_params(void)");
const quantize = lib.func("uint32_t llama_model_quantize(const char *, const char *, const llama_model_quantize_params *)");
lib.func("void llama_backend_init(void)")();
const p = defaults();
p.nthread = Number(nthread);
p.ftype = Number(ftype);
p.allow_requantize = true;
process.exit(quantize(inp, out, p) === 0 ? 0 : 2);
`;

export interface QuantizeOptions {
  type: QuantType;
  threads?: number;
  onProgress?: ProgressFn;
  /** Replace OUT if it exists. */
  overwrite?: boolean;
}

export interface QuantizeResult {
  input: string;
  output: string;
  type: QuantType;
  sizeBefore: number;
  sizeAfter: number;
  tensors: number;
  seconds: number;
}

export async function quantizeModel(input: string, output: string, opts: QuantizeOptions): Promise<QuantizeResult> {
  const inp = resolve(input);
  const out = resolve(output);
  if (inp === out)
    throw new DajianError(
      "invalid_input",
      "input and output are the same file",
      "write the quantized model to a new path",
    );
  if (existsSync(out) && !opts.overwrite)
    throw new DajianError("already_exists", `${out} already exists`, "choose another output path or pass --force");
  // Bounded validation first: llama.cpp's own parser is the one with the CVE history.
  const header = readGgufHeader(inp);
  if (header.tensors.length === 0)
    throw new DajianError("invalid_input", `${inp} has no tensors`, "quantize a model GGUF, not a vocab-only file");
  const ftype = QUANT_FTYPES[opts.type];
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const progress = opts.onProgress ?? noProgress;
  const req = createRequire(import.meta.url);
  const tmp = `${out}.tmp-${process.pid}`;
  const t0 = Date.now();
  const tail: string[] = [];
  const total = header.tensors.length;
  progress({ phase: "tensors", done: 0, total, item: opts.type });
  const code = await new Promise<number>((res, rej) => {
    const child = spawn(process.execPath, ["-e", CHILD, findLlamaLibrary(), inp, tmp, String(ftype), String(threads)], {
      env: { ...process.env, DAJIAN_KOFFI: req.resolve("koffi") },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let buf = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^\[\s*(\d+)\/\s*(\d+)\]\s+(\S+)/.exec(line);
        if (m) progress({ phase: "tensors", done: Number(m[1]), total: Number(m[2]), item: m[3] });
        if (line.trim()) {
          tail.push(line);
          if (tail.length > 30) tail.shift();
        }
      }
    });
    child.on("error", rej);
    child.on("close", (c, sig) => res(c ?? (sig ? 128 : 1)));
  });
  if (code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true });
    const why =
      tail.filter((l) => /error|failed|DAJIAN_ABI|exception/i.test(l)).pop() ?? tail.pop() ?? `exit code ${code}`;
    throw new DajianError(
      "internal",
      `quantization failed: ${why.trim()}`,
      "check that the input loads in llama.cpp (dajian bench model IN.gguf) and that the disk has room",
    );
  }
  renameSync(tmp, out);
  return {
    input: inp,
    output: out,
    type: opts.type,
    sizeBefore: statSync(inp).size,
    sizeAfter: statSync(out).size,
    tensors: total,
    seconds: (Date.now() - t0) / 1000,
  };
}
