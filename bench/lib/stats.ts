/** Percentiles, summaries and per-interval series over a SampleLog. Pure functions. */
import { NO_RESPONSE, type SampleLog } from "./samples.ts";

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Nearest-rank quantile of an ascending array (q in [0, 1]); NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(values: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    p999: quantileSorted(sorted, 0.999),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

/** Latencies of the answered requests of `log` whose start satisfies `keep`. */
export function latenciesWhere(log: SampleLog, keep: (start: number) => boolean = () => true): number[] {
  const out: number[] = [];
  for (let i = 0; i < log.count; i++) {
    if (log.status[i] !== NO_RESPONSE && keep(log.start[i]!)) out.push(log.latency[i]!);
  }
  return out;
}

export function median(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return NaN;
  return quantileSorted(Float64Array.from(finite).sort(), 0.5);
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter(Number.isFinite);
  return {
    median: median(finite),
    min: finite.length ? Math.min(...finite) : NaN,
    max: finite.length ? Math.max(...finite) : NaN,
  };
}

export interface Bucket {
  /** Bucket start, ms after the series origin. */
  t: number;
  count: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
}

/** Requests bucketed by start time into `bucketMs` intervals from `origin` to `end`. */
export function series(log: SampleLog, origin: number, end: number, bucketMs = 100): Bucket[] {
  const n = Math.max(0, Math.ceil((end - origin) / bucketMs));
  const lat: number[][] = Array.from({ length: n }, () => []);
  const errors = new Array<number>(n).fill(0);
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < log.count; i++) {
    const b = Math.floor((log.start[i]! - origin) / bucketMs);
    if (b < 0 || b >= n) continue;
    counts[b]!++;
    const s = log.status[i]!;
    if (s === NO_RESPONSE || s < 200 || s > 299) errors[b]!++;
    if (s !== NO_RESPONSE) lat[b]!.push(log.latency[i]!);
  }
  return lat.map((xs, b) => {
    const s = summarize(xs);
    return { t: b * bucketMs, count: counts[b]!, errors: errors[b]!, p50: s.p50, p99: s.p99, max: s.max };
  });
}

/** Rounds for display: 3 significant digits below 100, integers above. */
export function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return "-";
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  return Number(v.toPrecision(digits)).toString();
}
