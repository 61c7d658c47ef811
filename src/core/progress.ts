// Long work reports progress as events; the CLI renders them as a bar, the server as SSE.
// Library code never writes to the terminal itself.

export interface ProgressEvent {
  /** What is being counted, e.g. "files", "pages", "chunks", "steps", "bytes". */
  phase: string;
  done: number;
  total?: number;
  /** Current item (file name, step number …). */
  item?: string;
  /** Extra counters shown after the bar, e.g. { pages: 12, chunks: 340 }. */
  counters?: Record<string, number>;
}

export type ProgressFn = (e: ProgressEvent) => void;

export const noProgress: ProgressFn = () => {};

function fmtDuration(s: number): string {
  if (!isFinite(s) || s < 0) return "--";
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * A terminal progress line on stderr: bar, counts, rate and ETA. Redraws at most ~10×/s;
 * when stderr is not a TTY it prints a plain line every few seconds instead (logs stay readable).
 */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): ProgressFn & { end(): void } {
  const start = Date.now();
  let last = 0;
  let lastLine = "";
  const tty = Boolean(stream.isTTY);
  const fn = ((e: ProgressEvent) => {
    const now = Date.now();
    const final = e.total !== undefined && e.done >= e.total;
    if (!final && now - last < (tty ? 100 : 3000)) return;
    last = now;
    const secs = (now - start) / 1000;
    const rate = secs > 0 ? e.done / secs : 0;
    const eta = e.total !== undefined && rate > 0 ? (e.total - e.done) / rate : NaN;
    let bar = "";
    if (e.total) {
      const w = 24;
      const f = Math.min(w, Math.round((e.done / e.total) * w));
      bar = `[${"#".repeat(f)}${"-".repeat(w - f)}] `;
    }
    const counters = e.counters
      ? " " +
        Object.entries(e.counters)
          .map(([k, v]) => `${k} ${v}`)
          .join(" · ")
      : "";
    const total = e.total !== undefined ? `/${e.total}` : "";
    const item = e.item ? ` ${e.item.length > 40 ? "…" + e.item.slice(-39) : e.item}` : "";
    lastLine = `${bar}${e.phase} ${e.done}${total}${counters} · ${rate.toFixed(1)}/s · ETA ${fmtDuration(eta)}${item}`;
    if (tty) stream.write(`\r\x1b[2K${lastLine}`);
    else stream.write(lastLine + "\n");
  }) as ProgressFn & { end(): void };
  fn.end = () => {
    if (tty && lastLine) stream.write("\n");
  };
  return fn;
}
