// Format detection by content; the file extension only breaks ties between text-like formats.
import { extname } from "node:path";
import { DajianError } from "../core/errors.js";
import { decodeText } from "./encoding.js";
import type { DocFormat } from "./types.js";

export const SUPPORTED_HINT =
  "supported: PDF (with a text layer), DOCX, XLSX, PPTX, CSV, HTML, Markdown, plain text (UTF-8/UTF-16/GBK/GB18030/Big5)";

const BINARY_MAGIC: Array<[string, number[], string]> = [
  [
    "an OLE2 (legacy .doc/.xls/.ppt, or a password-protected Office file)",
    [0xd0, 0xcf, 0x11, 0xe0],
    "save it as DOCX/XLSX/PPTX without a password",
  ],
  ["a PNG image", [0x89, 0x50, 0x4e, 0x47], "images need OCR, which is not supported yet"],
  ["a JPEG image", [0xff, 0xd8, 0xff], "images need OCR, which is not supported yet"],
  ["a GIF image", [0x47, 0x49, 0x46, 0x38], "images need OCR, which is not supported yet"],
  ["a gzip archive", [0x1f, 0x8b], "extract it first"],
  ["an executable", [0x7f, 0x45, 0x4c, 0x46], "only documents can be ingested"],
  ["a RAR archive", [0x52, 0x61, 0x72, 0x21], "extract it first"],
  ["a 7-Zip archive", [0x37, 0x7a, 0xbc, 0xaf], "extract it first"],
];

function startsWith(bytes: Buffer, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/** OOXML kind from the zip's file names (central directory names are stored uncompressed). */
function ooxmlKind(bytes: Buffer): DocFormat | undefined {
  if (bytes.indexOf("[Content_Types].xml") < 0) return undefined;
  if (bytes.indexOf("word/document.xml") >= 0) return "docx";
  if (bytes.indexOf("xl/workbook.xml") >= 0) return "xlsx";
  if (bytes.indexOf("ppt/presentation.xml") >= 0) return "pptx";
  return undefined;
}

const HTML_RE = /^\s*(?:<\?xml[^>]*>\s*)?(?:<!--[\s\S]*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])/i;
const HTML_TAGS_RE =
  /<(?:div|p|h[1-6]|table|ul|ol|span|a|article|section|nav|header|footer|main)[\s>][\s\S]*<\/(?:div|p|h[1-6]|table|ul|ol|span|a|article|section|nav|header|footer|main)>/i;

export function detectFormat(bytes: Buffer, fileName: string): DocFormat {
  const ext = extname(fileName).toLowerCase();
  if (bytes.length === 0) {
    throw new DajianError("invalid_input", `${fileName} is empty (0 bytes)`, "check the file was copied completely");
  }
  if (bytes.subarray(0, 1024).indexOf("%PDF-") >= 0) return "pdf";
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) || startsWith(bytes, [0x50, 0x4b, 0x05, 0x06])) {
    const kind = ooxmlKind(bytes);
    if (kind) return kind;
    const office: Record<string, string> = { ".docx": "DOCX", ".xlsx": "XLSX", ".pptx": "PPTX" };
    if (office[ext]) {
      throw new DajianError(
        "corrupt",
        `${fileName} is named ${ext} but its zip container has no ${office[ext]} parts (truncated or damaged)`,
        "re-export or re-download the original",
      );
    }
    throw new DajianError(
      "unsupported",
      `${fileName} is a zip archive but not a DOCX, XLSX or PPTX document`,
      `extract it and ingest the files inside; ${SUPPORTED_HINT}`,
    );
  }
  for (const [what, magic, hint] of BINARY_MAGIC) {
    if (startsWith(bytes, magic))
      throw new DajianError("unsupported", `${fileName} is ${what}`, `${hint}; ${SUPPORTED_HINT}`);
  }
  let head: string;
  try {
    head = decodeText(bytes.subarray(0, 16 * 1024)).text;
  } catch (err) {
    const claimed: Record<string, string> = { ".pdf": "PDF", ".docx": "DOCX", ".xlsx": "XLSX", ".pptx": "PPTX" };
    if (claimed[ext]) {
      throw new DajianError(
        "corrupt",
        `${fileName} is named ${ext} but is not a valid ${claimed[ext]} file`,
        "re-export or re-download the original",
        { cause: err },
      );
    }
    throw new DajianError("unsupported", `${fileName} is not a recognised document type`, SUPPORTED_HINT, {
      cause: err,
    });
  }
  if (ext === ".md" || ext === ".markdown" || ext === ".mdx") return "markdown";
  if (ext === ".csv" || ext === ".tsv") return "csv";
  if (HTML_RE.test(head)) return "html";
  if ((ext === ".html" || ext === ".htm" || ext === ".xhtml") && /<[a-z!][\s\S]*>/i.test(head)) return "html";
  if (ext === ".txt" || ext === ".text" || ext === ".log") return "text";
  // No decisive extension: sniff.
  if (HTML_TAGS_RE.test(head.slice(0, 4096))) return "html";
  if (/^#{1,6}\s+\S/m.test(head) && /(^#{1,6}\s|^```|^\s*[-*]\s+\S|\[[^\]]+\]\([^)]+\))/m.test(head)) return "markdown";
  return "text";
}
