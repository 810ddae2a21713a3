// The peer comparison's arithmetic: per-measurement latency summaries, ours/go ratios per round and
// their medians. Pure functions (unit-tested in test/unit/bench/peer-stats.test.ts).
import { median, quantileSorted } from "../lib/stats.ts";
import type { ServerKind } from "./peer-servers.ts";
import type { Variant } from "./sim-envoy.ts";

export interface Measurement {
  server: ServerKind;
  variant: Variant;
  n: number;
  round: number;
  status: "ok" | "failed";
  error?: string;
  rampMs?: number;
  /** Per-client publish -> ACK of the change (ms): median, 99th percentile, and the last one. */
  p50?: number;
  p99?: number;
  allAcked?: number;
  /** Server process CPU (user + system) from just before the publish until it went idle again. */
  cpuS?: number;
  /** (RSS with N converged idle streams - RSS before any stream) / N, both after a GC. */
  kibPerIdleStream?: number;
  fanoutMs?: number;
  /** Per client worker, over the change window. */
  clientElu?: number[];
  clientCpuMs?: number[];
  /** Per client worker: its CPU ms / the window's ms (ELU high with this low: preempted, not busy). */
  clientCpuShare?: number[];
  /** Ours: a hash of controlplane/ when the server started (the working tree can change under a run). */
  sourceHash?: string;
  /**
   * With --changes K > 1: the changes after the first in the same server process, each field the
   * median over them (the first change after a start also pays the JIT compiling its path).
   */
  later?: ChangeFigures & { changes: number };
}

/** One change's figures (the fields of a Measurement that describe a change, not the server). */
export type ChangeFigures = Pick<Measurement, "p50" | "p99" | "allAcked" | "cpuS" | "clientElu" | "clientCpuMs" | "clientCpuShare">;

/** Each field's median over several changes (per worker for the client arrays). */
export function medianFigures(changes: readonly ChangeFigures[]): ChangeFigures {
  const scalar = (k: "p50" | "p99" | "allAcked" | "cpuS"): number => median(changes.map((c) => c[k] ?? NaN));
  const perWorker = (k: "clientElu" | "clientCpuMs" | "clientCpuShare"): number[] => {
    const width = Math.max(0, ...changes.map((c) => c[k]?.length ?? 0));
    return Array.from({ length: width }, (_, i) => median(changes.map((c) => c[k]?.[i] ?? NaN)));
  };
  return {
    p50: scalar("p50"), p99: scalar("p99"), allAcked: scalar("allAcked"), cpuS: scalar("cpuS"),
    clientElu: perWorker("clientElu"), clientCpuMs: perWorker("clientCpuMs"), clientCpuShare: perWorker("clientCpuShare"),
  };
}

/** The measurement as seen by its later changes (undefined when it has none). */
export function laterView(m: Measurement): Measurement | undefined {
  if (m.status === "ok" && !m.later) return undefined;
  const { later, ...rest } = m;
  return later ? { ...rest, ...later } : rest;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  allAcked: number;
}

/** publish -> ACK per client, summarised (nearest-rank percentiles). */
export function latencySummary(ackedAt: readonly number[], publishedAt: number): LatencySummary {
  if (ackedAt.length === 0) throw new Error("latencySummary: no ACKs");
  const sorted = Float64Array.from(ackedAt, (at) => at - publishedAt).sort();
  return { p50: quantileSorted(sorted, 0.5), p99: quantileSorted(sorted, 0.99), allAcked: sorted[sorted.length - 1]! };
}

/** ours / go: above 1, ours took longer (or used more); NaN when either side is missing. */
export function ratio(ours: number | undefined, go: number | undefined): number {
  if (ours === undefined || go === undefined || !Number.isFinite(ours) || !Number.isFinite(go) || go <= 0) return NaN;
  return ours / go;
}

export const RATIO_METRICS = ["p50", "p99", "allAcked", "cpuS", "kibPerIdleStream"] as const;
export type RatioMetric = (typeof RATIO_METRICS)[number];

export interface RoundPair {
  variant: Variant;
  n: number;
  round: number;
  ours: Measurement;
  go: Measurement;
  ratios: Record<RatioMetric, number>;
}

/** Pairs each round's two measurements (same variant, N and round) and computes their ratios. */
export function pairRounds(measurements: readonly Measurement[]): RoundPair[] {
  const pairs: RoundPair[] = [];
  for (const ours of measurements.filter((m) => m.server === "ours")) {
    const go = measurements.find((m) => m.server === "go" && m.variant === ours.variant && m.n === ours.n && m.round === ours.round);
    if (!go) continue;
    // A failed side may hold partial numbers (say, memory before the change failed): no ratio.
    const both = ours.status === "ok" && go.status === "ok";
    const ratios = Object.fromEntries(RATIO_METRICS.map((k) => [k, both ? ratio(ours[k], go[k]) : NaN])) as Record<RatioMetric, number>;
    pairs.push({ variant: ours.variant, n: ours.n, round: ours.round, ours, go, ratios });
  }
  return pairs;
}

export interface Summary {
  variant: Variant;
  n: number;
  rounds: number;
  /** Medians over the rounds that succeeded, per server. */
  ours: Record<RatioMetric, number>;
  go: Record<RatioMetric, number>;
  /** Median of the per-round ratios (not the ratio of the medians). */
  medianRatio: Record<RatioMetric, number>;
  /** Highest client event-loop utilisation seen in any worker, per server. */
  maxClientElu: { ours: number; go: number };
  /** Highest share of a core any client worker used over its window, per server. */
  maxClientCpuShare: { ours: number; go: number };
}

const medianOf = (ms: readonly Measurement[], k: RatioMetric): number =>
  median(ms.filter((m) => m.status === "ok").map((m) => m[k] ?? NaN));
const maxOf = (ms: readonly Measurement[], k: "clientElu" | "clientCpuShare"): number =>
  Math.max(-Infinity, ...ms.flatMap((m) => m[k] ?? []));

export function summarize(pairs: readonly RoundPair[]): Summary[] {
  const keys = [...new Set(pairs.map((p) => `${p.variant}\n${p.n}`))];
  return keys.map((key) => {
    const group = pairs.filter((p) => `${p.variant}\n${p.n}` === key);
    const ours = group.map((p) => p.ours);
    const go = group.map((p) => p.go);
    const per = (f: (k: RatioMetric) => number): Record<RatioMetric, number> =>
      Object.fromEntries(RATIO_METRICS.map((k) => [k, f(k)])) as Record<RatioMetric, number>;
    return {
      variant: group[0]!.variant,
      n: group[0]!.n,
      rounds: group.length,
      ours: per((k) => medianOf(ours, k)),
      go: per((k) => medianOf(go, k)),
      medianRatio: per((k) => median(group.map((p) => p.ratios[k]))),
      maxClientElu: { ours: maxOf(ours, "clientElu"), go: maxOf(go, "clientElu") },
      maxClientCpuShare: { ours: maxOf(ours, "clientCpuShare"), go: maxOf(go, "clientCpuShare") },
    };
  });
}

/**
 * Given CPU readings (ms) taken every `intervalMs`, the index of the reading where the process
 * went idle: the first one followed by `quietIntervals` intervals each using at most
 * `toleranceMs` (one clock tick). -1 while it has not.
 */
export function idleIndex(readings: readonly number[], quietIntervals = 2, toleranceMs = 10): number {
  for (let i = 0; i + quietIntervals < readings.length; i++) {
    let quiet = true;
    for (let j = i; j < i + quietIntervals; j++) {
      if (readings[j + 1]! - readings[j]! > toleranceMs) {
        quiet = false;
        break;
      }
    }
    if (quiet) return i;
  }
  return -1;
}
