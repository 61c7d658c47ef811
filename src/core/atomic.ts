import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/**
 * Write a file piece by piece into `PATH.tmp-PID`, fsync, then rename over PATH: a crash or a throwing producer
 * never leaves half a file under the final name (the temporary is removed on error). `fill` receives `put`, which
 * appends bytes (looping over short writes). Returns the byte size.
 */
export function writeFileAtomic(path: string, fill: (put: (bytes: Uint8Array) => void) => void): number {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  let pos = 0;
  const put = (b: Uint8Array): void => {
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
    pos += b.length;
  };
  try {
    fill(put);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    return pos;
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw err;
  }
}
