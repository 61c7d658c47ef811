// Checkpoints: weights, AdamW moments and the run's resumable state (step, RNG, data position, clock) in one file,
// written to a temporary name, synced and renamed over the previous one — a kill at any instant leaves either the
// old or the new checkpoint, never a torn one. Tensor bytes stream straight from/to ggml memory (no copies).
// Layout: "DJCK", u32 version, u32 JSON length, JSON header, then per tensor: weight, m, v as little-endian f32.

import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, writeSync } from "node:fs";
import { DajianError } from "../../core/errors.js";
import type { Tensor } from "../../engine/index.js";

const MAGIC = "DJCK";
const VERSION = 1;

export interface CheckpointTensors {
  name: string;
  weight: Tensor;
  m: Tensor;
  v: Tensor;
}

interface Header<S> {
  tensors: Array<{ name: string; n: number }>;
  state: S;
}

const bytesOf = (t: Tensor): Buffer => {
  const v = t.view();
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
};

/** Write `state` and the tensors to `path` atomically. */
export function saveCheckpoint<S>(path: string, tensors: CheckpointTensors[], state: S): void {
  const header: Header<S> = { tensors: tensors.map((t) => ({ name: t.name, n: t.weight.numel })), state };
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const head = Buffer.alloc(12);
  head.write(MAGIC, 0, "ascii");
  head.writeUInt32LE(VERSION, 4);
  head.writeUInt32LE(json.length, 8);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, head);
    writeSync(fd, json);
    for (const t of tensors) for (const x of [t.weight, t.m, t.v]) writeAll(fd, bytesOf(x));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function writeAll(fd: number, b: Buffer): void {
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
}

/** The state part of a checkpoint, without touching tensors (undefined when there is none). */
export function readCheckpointState<S>(path: string): S | undefined {
  if (!existsSync(path)) return undefined;
  const fd = openSync(path, "r");
  try {
    return readHeader<S>(fd, path).header.state;
  } finally {
    closeSync(fd);
  }
}

/** Restore the tensors from `path` (names and sizes must match) and return the saved state. */
export function loadCheckpoint<S>(path: string, tensors: CheckpointTensors[]): S {
  const fd = openSync(path, "r");
  try {
    const { header, offset } = readHeader<S>(fd, path);
    const expected = offset + header.tensors.reduce((a, t) => a + t.n * 12, 0);
    if (fstatSync(fd).size !== expected) throw corrupt(path, "its size does not match its header");
    if (
      header.tensors.length !== tensors.length ||
      header.tensors.some((h, i) => h.name !== tensors[i].name || h.n !== tensors[i].weight.numel)
    ) {
      throw new DajianError(
        "corrupt",
        `checkpoint ${path} holds a different model shape`,
        "resume with the run's own settings, or start a new run folder",
      );
    }
    let pos = offset;
    for (const t of tensors) {
      for (const x of [t.weight, t.m, t.v]) {
        const b = bytesOf(x);
        for (let off = 0; off < b.length;) {
          const n = readSync(fd, b, off, b.length - off, pos + off);
          if (n === 0) throw corrupt(path, "it is truncated");
          off += n;
        }
        pos += b.length;
      }
    }
    return header.state;
  } finally {
    closeSync(fd);
  }
}

function readHeader<S>(fd: number, path: string): { header: Header<S>; offset: number } {
  const head = Buffer.alloc(12);
  if (readSync(fd, head, 0, 12, 0) !== 12 || head.toString("ascii", 0, 4) !== MAGIC)
    throw corrupt(path, "it is not a dajian checkpoint");
  if (head.readUInt32LE(4) !== VERSION) throw corrupt(path, `version ${head.readUInt32LE(4)} is unknown`);
  const len = head.readUInt32LE(8);
  if (len > fstatSync(fd).size - 12) throw corrupt(path, "its header is truncated");
  const json = Buffer.alloc(len);
  readSync(fd, json, 0, len, 12);
  try {
    return { header: JSON.parse(json.toString("utf8")) as Header<S>, offset: 12 + len };
  } catch {
    throw corrupt(path, "its header is not JSON");
  }
}

function corrupt(path: string, why: string): DajianError {
  return new DajianError(
    "corrupt",
    `checkpoint ${path} is unusable: ${why}`,
    "delete it to restart the run from step 0, or resume from a copy",
  );
}
