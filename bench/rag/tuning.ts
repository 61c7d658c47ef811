// The benchmark measures dajian's shipped defaults. For exploration only, BENCH_RAG_TUNING='{"headWeight":1}'
// overrides SearchTuning fields; the override is recorded in the report so such a run is never mistaken for
// the defaults.
import { DEFAULT_TUNING, type SearchTuning } from "../../src/index/search.js";

function override(): Partial<SearchTuning> | undefined {
  const raw = process.env.BENCH_RAG_TUNING;
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Partial<SearchTuning>;
  } catch {
    throw new Error(`BENCH_RAG_TUNING is not valid JSON: ${raw}`);
  }
}

export function dajianTuning(): { tuning?: Partial<SearchTuning> } {
  const o = override();
  return o ? { tuning: o } : {};
}

export function describeTuning(): Record<string, unknown> {
  const o = override();
  return { ...DEFAULT_TUNING, ...(o ?? {}), overridden: o ? Object.keys(o) : [] };
}
