// The run's metrics log (metrics.jsonl: one line per optimizer step, validation fields on the steps that have them)
// and its loss-curve picture (loss-curve.html: self-contained, inline SVG, no scripts), redrawn at each validation.

import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { writeAtomic } from "./data.js";

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Training tokens consumed so far. */
  tokens: number;
  tokensPerSecond: number;
  /** Training seconds so far (across resumes). */
  seconds: number;
  rssBytes: number;
  valLoss?: number;
  valPerplexity?: number;
}

export class MetricsLog {
  readonly records: StepMetrics[] = [];

  /** Open the log; on resume, lines after `keepUpTo` (steps the checkpoint does not hold) are dropped. */
  constructor(
    readonly path: string,
    keepUpTo = 0,
  ) {
    if (!existsSync(path)) return;
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as StepMetrics;
        if (r.step <= keepUpTo) this.records.push(r);
      } catch {
        break; // a line torn by a kill ends the usable log
      }
    }
    writeAtomic(path, this.records.map((r) => JSON.stringify(r) + "\n").join(""));
  }

  append(r: StepMetrics): void {
    this.records.push(r);
    appendFileSync(this.path, JSON.stringify(r) + "\n");
  }
}

const W = 760;
const H = 360;
const M = { l: 56, r: 16, t: 28, b: 40 };

/** Mean of consecutive buckets, so a long run draws at most `max` points. */
function downsample(pts: Array<[number, number]>, max: number): Array<[number, number]> {
  if (pts.length <= max) return pts;
  const k = Math.ceil(pts.length / max);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < pts.length; i += k) {
    const b = pts.slice(i, i + k);
    out.push([b[b.length - 1][0], b.reduce((a, p) => a + p[1], 0) / b.length]);
  }
  return out;
}

const esc = (s: string): string => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Write the loss curve (training loss line, validation loss dots) as a standalone HTML page. */
export function writeLossCurve(path: string, records: StepMetrics[], title: string): void {
  const train = downsample(
    records.map((r) => [r.step, r.loss] as [number, number]),
    1200,
  );
  const val = records.filter((r) => r.valLoss !== undefined).map((r) => [r.step, r.valLoss as number]);
  const all = [...train, ...val];
  const xMax = Math.max(1, ...all.map((p) => p[0]));
  const yMin = Math.min(...all.map((p) => p[1]), Infinity);
  const yMaxRaw = Math.max(...all.map((p) => p[1]), -Infinity);
  const y0 = Number.isFinite(yMin) ? Math.max(0, yMin - 0.05 * (yMaxRaw - yMin || 1)) : 0;
  const y1 = Number.isFinite(yMaxRaw) ? yMaxRaw + 0.05 * (yMaxRaw - yMin || 1) : 1;
  const X = (s: number): number => M.l + (s / xMax) * (W - M.l - M.r);
  const Y = (v: number): number => H - M.b - ((v - y0) / (y1 - y0)) * (H - M.t - M.b);
  const line = train.map(([s, v], i) => `${i ? "L" : "M"}${X(s).toFixed(1)},${Y(v).toFixed(1)}`).join("");
  const dots = val
    .map(([s, v]) => `<circle cx="${X(s).toFixed(1)}" cy="${Y(v).toFixed(1)}" r="3.5" fill="#d9480f"/>`)
    .join("");
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const v = y0 + f * (y1 - y0);
      const s = Math.round(f * xMax);
      return (
        `<text x="${M.l - 6}" y="${Y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>` +
        `<line x1="${M.l}" x2="${W - M.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>` +
        `<text x="${X(s)}" y="${H - M.b + 16}" text-anchor="middle">${s}</text>`
      );
    })
    .join("");
  const last = records[records.length - 1];
  const lastVal = [...records].reverse().find((r) => r.valLoss !== undefined);
  const caption = last
    ? `step ${last.step} · train loss ${last.loss.toFixed(4)}` +
      (lastVal ? ` · val loss ${lastVal.valLoss?.toFixed(4)} (ppl ${lastVal.valPerplexity?.toFixed(2)})` : "")
    : "no steps yet";
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">` +
    `<rect width="${W}" height="${H}" fill="#fff"/>${ticks}` +
    `<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${H - M.b}" stroke="#333"/>` +
    `<line x1="${M.l}" x2="${W - M.r}" y1="${H - M.b}" y2="${H - M.b}" stroke="#333"/>` +
    `<path d="${line}" fill="none" stroke="#1c7ed6" stroke-width="1.5"/>${dots}` +
    `<text x="${M.l}" y="16" font-size="13">${esc(caption)}</text>` +
    `<text x="${(W + M.l) / 2}" y="${H - 6}" text-anchor="middle">step</text>` +
    `<text x="${W - M.r}" y="16" text-anchor="end"><tspan fill="#1c7ed6">— train</tspan>  <tspan fill="#d9480f">● validation</tspan></text>` +
    `</svg>`;
  writeAtomic(
    path,
    `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>` +
      `<body style="font-family:sans-serif"><h3>${esc(title)}</h3>${svg}</body></html>\n`,
  );
}
