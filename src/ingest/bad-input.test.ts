// Bad input: every failure is a DajianError with a one-line reason and a fix; nothing hangs or blows up.
import { crc32, deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { makeDocx, makePdf } from "./fixtures.js";
import { chunkDocument, detectFormat, parseDocument, parseDocumentIsolated } from "./index.js";

interface ZipEntry {
  name: string;
  data: Buffer;
  /** Lie in the headers about the uncompressed size (a bomb that hides its size). */
  declaredSize?: number;
}

/** A minimal but valid zip writer (deflate), so tests can craft hostile archives byte by byte. */
function makeZip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const comp = deflateRawSync(e.data, { level: 9 });
    const crc = crc32(e.data);
    const size = e.declaredSize ?? e.data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(comp.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(comp.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, comp);
    centrals.push(central, name);
    offset += 30 + name.length + comp.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const CT = `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>`;
const DOC = `<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>hello</w:t></w:r></w:p></w:body></w:document>`;

async function expectDajian(p: Promise<unknown>, code: string, re: RegExp): Promise<DajianError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DajianError);
  const d = err as DajianError;
  expect(d.code).toBe(code);
  expect(d.oneLine()).toMatch(re);
  expect(d.hint.length).toBeGreaterThan(5);
  expect(d.oneLine()).not.toContain("\n");
  return d;
}

describe("bad input", () => {
  it("zero-byte file", async () => {
    await expectDajian(parseDocument(Buffer.alloc(0), "empty.pdf"), "invalid_input", /empty \(0 bytes\)/);
  });

  it("over the size limit, before any parsing", async () => {
    await expectDajian(
      parseDocument(Buffer.alloc(2048, 65), "big.txt", { maxBytes: 1024 }),
      "too_large",
      /over the .* limit — .*maxFileBytes/,
    );
  });

  it("unknown and binary types name the supported formats", async () => {
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    await expectDajian(parseDocument(png, "scan.png"), "unsupported", /PNG image — .*OCR/);
    const random = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24));
    await expectDajian(parseDocument(random, "blob.bin"), "unsupported", /supported: PDF/);
    const zip = makeZip([{ name: "a.txt", data: Buffer.from("hi") }]);
    await expectDajian(parseDocument(zip, "a.zip"), "unsupported", /zip archive but not a DOCX/);
    expect(() => detectFormat(Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), "old.doc")).toThrow(
      /OLE2/,
    );
  });

  it("binary data named .pdf is reported as corrupt", async () => {
    const random = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24));
    await expectDajian(parseDocument(random, "report.pdf"), "corrupt", /named \.pdf but is not a valid PDF/);
  });

  it("corrupt (truncated / garbled) PDF", async () => {
    const pdf = await makePdf([{ paragraphs: ["Some text on a page."] }]);
    await expectDajian(
      parseDocument(pdf.subarray(0, 400), "cut.pdf"),
      "corrupt",
      /not a readable PDF|no text|cannot read/,
    );
    const garbled = Buffer.concat([Buffer.from("%PDF-1.7\n"), Buffer.alloc(3000, 0x41)]);
    await expectDajian(parseDocument(garbled, "garbled.pdf"), "corrupt", /not a readable PDF/);
  });

  it("encrypted PDF", async () => {
    const pdf = await makePdf([{ paragraphs: ["Top secret salary table."] }], { userPassword: "s3cret" });
    await expectDajian(parseDocument(pdf, "secret.pdf"), "unsupported", /encrypted .* — remove the password/);
  });

  it("corrupt DOCX (truncated zip)", async () => {
    const docx = await makeDocx({ body: [{ paragraph: "hello world" }] });
    await expectDajian(
      parseDocument(docx.subarray(0, Math.floor(docx.length * 0.6)), "cut.docx"),
      "corrupt",
      /zip|cannot read/,
    );
  });

  it("zip bomb disguised as DOCX: huge compression ratio", async () => {
    const bomb = makeZip([
      { name: "[Content_Types].xml", data: Buffer.from(CT) },
      { name: "word/document.xml", data: Buffer.from(DOC) },
      { name: "word/media/image1.bin", data: Buffer.alloc(64 * 1024 * 1024) },
    ]);
    expect(bomb.length).toBeLessThan(200_000);
    expect(detectFormat(bomb, "bomb.docx")).toBe("docx");
    await expectDajian(
      parseDocument(bomb, "bomb.docx"),
      "too_large",
      /zip bomb \(entry word\/media\/image1.bin expands \d+×\)/,
    );
  });

  it("zip bomb that lies about its sizes", async () => {
    const liar = makeZip([
      { name: "[Content_Types].xml", data: Buffer.from(CT) },
      { name: "xl/workbook.xml", data: Buffer.alloc(8 * 1024 * 1024, 0x20), declaredSize: 1000 },
    ]);
    const err = await expectDajian(parseDocument(liar, "liar.xlsx"), "corrupt", /damaged zip entry|zip bomb/);
    expect(err.message).toMatch(/liar\.xlsx/);
  });

  it("zip over the total uncompressed limit", async () => {
    const big = makeZip([
      { name: "[Content_Types].xml", data: Buffer.from(CT) },
      { name: "ppt/presentation.xml", data: Buffer.from("<p/>") },
      {
        name: "ppt/media/a.bin",
        data: Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7919) & 0xff)),
      },
    ]);
    await expectDajian(
      parseDocument(big, "deck.pptx", { maxZipUncompressed: 1024 * 1024 }),
      "too_large",
      /over 1 MiB uncompressed/,
    );
  });

  it("XML entity expansion inside OOXML", async () => {
    const lol = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>`;
    const zip = makeZip([
      { name: "[Content_Types].xml", data: Buffer.from(CT) },
      { name: "word/document.xml", data: Buffer.from(lol) },
    ]);
    await expectDajian(parseDocument(zip, "lol.docx"), "corrupt", /DTD\/entities/);
  });

  it("a giant single line parses and chunks in bounded time", async () => {
    const line = Array.from({ length: 400_000 }, (_, i) => `tok${i}`).join(" "); // ~4 MB, no newline
    const doc = await parseDocument(Buffer.from(line), "oneline.txt");
    expect(doc.blocks).toHaveLength(1);
    const chunks = chunkDocument(doc, { targetTokens: 400, overlapTokens: 60 });
    expect(chunks.length).toBeGreaterThan(1000);
    expect(chunks[chunks.length - 1].text.endsWith("tok399999")).toBe(true);
  });

  it("200k short wrapped lines re-join in linear time (isolated, so a regression fails instead of hanging)", async () => {
    const text = Array.from({ length: 200_000 }, (_, i) => `line ${i} 内容`).join("\n"); // one 3 MB paragraph
    const doc = await parseDocumentIsolated(Buffer.from(text), "lines.txt", { timeoutMs: 30_000 });
    expect(doc.blocks).toHaveLength(1);
    expect(doc.blocks[0].text.startsWith("line 0 内容 line 1")).toBe(true);
    expect(doc.blocks[0].text.endsWith("line 199999 内容")).toBe(true);
  });

  it("deeply nested HTML does not overflow the stack", async () => {
    const depth = 50_000;
    const html = `<html><body>${"<div>".repeat(depth)}<p>deep content</p>${"</div>".repeat(depth)}</body></html>`;
    const doc = await parseDocument(Buffer.from(html), "deep.html");
    expect(doc.blocks.map((b) => b.text)).toEqual(["deep content"]);
    expect(doc.warnings.join(" ")).toMatch(/deeply nested/);
  });

  it("stops at the time limit", async () => {
    const pdf = await makePdf(Array.from({ length: 30 }, (_, i) => ({ paragraphs: [`Page ${i} text. `.repeat(40)] })));
    await expectDajian(parseDocument(pdf, "slow.pdf", { timeoutMs: 1 }), "too_large", /took longer than/);
  });
});
