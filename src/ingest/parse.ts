// parseDocument: size limits, format detection, the per-format loader under a time limit, then a
// common clean-up pass (NFC, control characters, empty blocks). Every failure is a DajianError.
import { DEFAULT_CONFIG } from "../core/config.js";
import { DajianError, isDajianError } from "../core/errors.js";
import { detectFormat, SUPPORTED_HINT } from "./detect.js";
import { decodeText } from "./encoding.js";
import { makeTable, renderTable } from "./table.js";
import { markdownBlocks, textBlocks } from "./text.js";
import { normalizeDisplay } from "./text-utils.js";
import type { Block, DocFormat, ParsedDocument } from "./types.js";

export interface ParseOptions {
  /** Reject larger inputs before reading them (default: config ingest.maxFileBytes, 200 MiB). */
  maxBytes?: number;
  /** Cap on the total uncompressed size of a DOCX/XLSX/PPTX zip (default 512 MiB). */
  maxZipUncompressed?: number;
  /** Give up on one file after this long (default 120 s). */
  timeoutMs?: number;
}

export interface LoaderContext {
  fileName: string;
  maxZipUncompressed: number;
  /** Loaders call this between pages/slides/sheets so a timeout stops work promptly. */
  checkDeadline: () => void;
}

type Loader = (bytes: Buffer, ctx: LoaderContext) => Promise<Omit<ParsedDocument, "format">>;

const LOADERS: Record<DocFormat, () => Promise<Loader>> = {
  text: async () => async (bytes) => {
    const { text, encoding } = decodeText(bytes);
    return { blocks: textBlocks(text.replace(/\r\n?/g, "\n")), needsOcrPages: [], warnings: [], encoding };
  },
  markdown: async () => async (bytes) => {
    const { text, encoding } = decodeText(bytes);
    const { blocks, title } = markdownBlocks(text);
    return { blocks, ...(title ? { title } : {}), needsOcrPages: [], warnings: [], encoding };
  },
  csv: async () => (await import("./csv.js")).loadCsv,
  html: async () => (await import("./html.js")).loadHtml,
  pdf: async () => (await import("./pdf.js")).loadPdf,
  docx: async () => (await import("./docx.js")).loadDocx,
  xlsx: async () => (await import("./xlsx.js")).loadXlsx,
  pptx: async () => (await import("./pptx.js")).loadPptx,
};

const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufeff\u200b]/g;

/** NFC, no control characters, no empty blocks; tables re-rendered so chunker invariants hold. */
export function finishBlocks(blocks: Block[]): Block[] {
  const out: Block[] = [];
  for (const b of blocks) {
    if (b.kind === "table" && b.table) {
      const t = makeTable(b.table.header, b.table.rows, b.table.name);
      if (t.rows.length === 0 && t.header.length === 0) continue;
      out.push({ ...b, table: t, text: renderTable(t) });
      continue;
    }
    let text = normalizeDisplay(b.text.replace(CONTROL, "")).replace(/[ \t\u00a0\u3000]+\n/g, "\n");
    text = b.kind === "code" ? text.replace(/\s+$/, "") : text.replace(/[ \t]+/g, " ").trim();
    if (text === "") continue;
    out.push({ ...b, text });
  }
  return out;
}

export async function parseDocument(bytes: Buffer, fileName: string, opts: ParseOptions = {}): Promise<ParsedDocument> {
  const maxBytes = opts.maxBytes ?? DEFAULT_CONFIG.ingest.maxFileBytes;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  if (bytes.length > maxBytes) {
    throw new DajianError(
      "too_large",
      `${fileName} is ${(bytes.length / 1048576).toFixed(1)} MiB, over the ${(maxBytes / 1048576).toFixed(1)} MiB limit`,
      "split the file or raise ingest.maxFileBytes (DAJIAN_MAX_FILE_BYTES)",
    );
  }
  const format = detectFormat(bytes, fileName);
  const deadline = Date.now() + timeoutMs;
  const timeoutError = () =>
    new DajianError(
      "too_large",
      `${fileName}: parsing took longer than ${Math.round(timeoutMs / 1000)} s`,
      "split the file into smaller documents or raise the parse timeout",
    );
  const ctx: LoaderContext = {
    fileName,
    maxZipUncompressed: opts.maxZipUncompressed ?? 512 * 1024 * 1024,
    checkDeadline: () => {
      if (Date.now() > deadline) throw timeoutError();
    },
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    const loader = await LOADERS[format]();
    const result = await Promise.race([
      loader(bytes, ctx),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeoutError()), timeoutMs);
      }),
    ]);
    const blocks = finishBlocks(result.blocks);
    return { format, ...result, blocks };
  } catch (err) {
    if (isDajianError(err)) throw err;
    const reason = err instanceof Error ? err.message.split("\n")[0].slice(0, 200) : String(err).slice(0, 200);
    throw new DajianError(
      "corrupt",
      `${fileName}: cannot read this ${format.toUpperCase()} file (${reason})`,
      `re-export or repair the file; ${SUPPORTED_HINT}`,
      { cause: err },
    );
  } finally {
    if (timer) clearTimeout(timer);
  }
}
