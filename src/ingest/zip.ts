// Zip pre-scan for DOCX/XLSX/PPTX, run BEFORE any parser sees the bytes: caps entry count, declared and
// actual uncompressed size, and compression ratio (zip bombs), and rejects XML with a DTD (entity
// expansion: OOXML never needs one). Entries the caller asks for are returned decompressed.
import yauzl from "yauzl";
import { DajianError } from "../core/errors.js";

export interface ZipLimits {
  maxEntries?: number;
  maxUncompressed: number;
  /** Largest allowed uncompressed/compressed ratio for an entry over 1 MiB. */
  maxRatio?: number;
}

function bomb(fileName: string, why: string): DajianError {
  return new DajianError(
    "too_large",
    `${fileName} looks like a zip bomb (${why})`,
    "open and re-save it in its Office application; if it is genuine, raise the limit ingest.maxZipUncompressed",
  );
}

export async function scanZip(
  bytes: Buffer,
  fileName: string,
  limits: ZipLimits,
  keep: (name: string) => boolean = () => false,
): Promise<Map<string, Buffer>> {
  const maxEntries = limits.maxEntries ?? 20_000;
  const maxRatio = limits.maxRatio ?? 200;
  const kept = new Map<string, Buffer>();
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(bytes, { lazyEntries: true, validateEntrySizes: true, strictFileNames: false }, (err, z) =>
      err || !z
        ? reject(
            new DajianError(
              "corrupt",
              `${fileName} is not a valid zip container (${err?.message ?? "unreadable"})`,
              "re-export the document from its Office application",
              { cause: err },
            ),
          )
        : resolve(z),
    ),
  );
  if (zip.entryCount > maxEntries) {
    zip.close();
    throw bomb(fileName, `${zip.entryCount} entries, limit ${maxEntries}`);
  }
  let declared = 0;
  let actual = 0;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      zip.close();
      reject(
        e instanceof DajianError
          ? e
          : new DajianError(
              "corrupt",
              `${fileName} has a damaged zip entry (${(e as Error)?.message ?? e})`,
              "re-export the document from its Office application",
              { cause: e },
            ),
      );
    };
    zip.on("error", fail);
    zip.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(kept);
    });
    zip.on("entry", (entry: yauzl.Entry) => {
      if (settled) return;
      if (entry.fileName.endsWith("/")) return zip.readEntry();
      declared += entry.uncompressedSize;
      if (declared > limits.maxUncompressed)
        return fail(bomb(fileName, `over ${Math.round(limits.maxUncompressed / 1048576)} MiB uncompressed`));
      if (entry.uncompressedSize > 1048576 && entry.uncompressedSize / Math.max(1, entry.compressedSize) > maxRatio) {
        return fail(
          bomb(
            fileName,
            `entry ${entry.fileName} expands ${Math.round(entry.uncompressedSize / Math.max(1, entry.compressedSize))}×`,
          ),
        );
      }
      const isXml = /\.(xml|rels|vml)$/i.test(entry.fileName);
      const wanted = keep(entry.fileName);
      // Every entry is inflated once here (and discarded unless wanted): yauzl checks the real size
      // against the declared one, so later parsers cannot be surprised by a lying central directory.
      zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) return fail(err);
        const parts: Buffer[] = [];
        let tail = "";
        let checkedDtd = false;
        stream.on("data", (c: Buffer) => {
          actual += c.length;
          if (actual > limits.maxUncompressed) {
            stream.destroy();
            return fail(bomb(fileName, "actual content exceeds the declared sizes"));
          }
          if (isXml && !checkedDtd) {
            // A DTD must come before the root element; checking the prologue (first 4 KiB) is enough.
            const s = tail + c.toString("latin1", 0, Math.min(c.length, 4096));
            if (/<!DOCTYPE|<!ENTITY/i.test(s)) {
              stream.destroy();
              return fail(
                new DajianError(
                  "corrupt",
                  `${fileName}: ${entry.fileName} declares a DTD/entities (possible XML entity-expansion attack)`,
                  "Office documents never need a DTD; re-save the file in its Office application",
                ),
              );
            }
            tail = s.slice(-16);
            if (tail.length >= 4096 || /<[A-Za-z]/.test(s.replace(/<\?xml[^>]*\?>/, ""))) checkedDtd = true;
          }
          if (wanted) parts.push(c);
        });
        stream.on("error", fail);
        stream.on("end", () => {
          if (wanted) kept.set(entry.fileName, Buffer.concat(parts));
          zip.readEntry();
        });
      });
    });
    zip.readEntry();
  });
}
