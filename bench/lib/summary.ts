/**
 * From per-round numbers to the report's rows: medians across rounds (with min-max spread), and
 * each filter row's ratios to its group's "no filter" and "native" rows, computed per round (the
 * rows ran back to back in the same round, under the same machine load) and then the median.
 */
import type { Group, Target } from "./stacks.ts";
import { median, spread, type Spread } from "./stats.ts";
import type { LoadMode, RunStats, SteadyResult } from "./steady.ts";

export interface TargetInfo {
  id: string;
  label: string;
  group: Group;
  filter: Target["filter"];
  via: Target["via"];
}

export interface Ratios {
  p50: number;
  p99: number;
  reqPerSec: number;
  envoyCpuUs: number;
}

export interface Row {
  target: TargetInfo;
  mode: LoadMode;
  rounds: number;
  p50: number;
  p90: number;
  p99: Spread;
  p999: number;
  max: number;
  reqPerSec: Spread;
  /** non-2xx + socket errors, summed over rounds. */
  errors: number;
  requests: number;
  envoyCpuUs: number;
  upstreamCpuUs: number;
  sendLagP99: number;
  vsNone?: Ratios;
  vsNative?: Ratios;
}

const REFS: Record<Group, { none?: string; native?: string }> = {
  baseline: {},
  proxy: { none: "proxy-none", native: "proxy-native" },
  direct_response: { none: "dr-none", native: "dr-native" },
};

function pairedRatios(runs: RunStats[], refRuns: RunStats[] | undefined): Ratios | undefined {
  if (!refRuns) return undefined;
  const byRound = new Map(refRuns.map((r) => [r.round, r]));
  const pairs = runs.map((r) => [r, byRound.get(r.round)] as const).filter((p): p is readonly [RunStats, RunStats] => p[1] !== undefined);
  const m = (f: (r: RunStats) => number | undefined): number => median(pairs.map(([a, b]) => (f(a) ?? NaN) / (f(b) ?? NaN)));
  return {
    p50: m((r) => r.latency.p50),
    p99: m((r) => r.latency.p99),
    reqPerSec: m((r) => r.reqPerSec),
    envoyCpuUs: m((r) => r.envoyCpuUs),
  };
}

export function summarizeSteady(targets: TargetInfo[], results: SteadyResult[]): Row[] {
  const runsOf = (id: string | undefined, mode: LoadMode): RunStats[] | undefined =>
    id === undefined ? undefined : results.find((r) => r.targetId === id && r.mode === mode)?.runs;
  const rows: Row[] = [];
  for (const mode of ["closed", "open"] as const) {
    for (const t of targets) {
      const runs = runsOf(t.id, mode) ?? [];
      const refs = REFS[t.group];
      const row: Row = {
        target: t,
        mode,
        rounds: runs.length,
        p50: median(runs.map((r) => r.latency.p50)),
        p90: median(runs.map((r) => r.latency.p90)),
        p99: spread(runs.map((r) => r.latency.p99)),
        p999: median(runs.map((r) => r.latency.p999)),
        max: median(runs.map((r) => r.latency.max)),
        reqPerSec: spread(runs.map((r) => r.reqPerSec)),
        errors: runs.reduce((n, r) => n + r.non2xx + r.socketErrors, 0),
        requests: runs.reduce((n, r) => n + r.requests, 0),
        envoyCpuUs: median(runs.map((r) => r.envoyCpuUs ?? NaN)),
        upstreamCpuUs: median(runs.map((r) => r.upstreamCpuUs ?? NaN)),
        sendLagP99: median(runs.map((r) => r.sendLagP99 ?? NaN)),
      };
      if (t.filter !== "none") {
        row.vsNone = pairedRatios(runs, runsOf(refs.none, mode));
        if (t.filter !== "native") row.vsNative = pairedRatios(runs, runsOf(refs.native, mode));
      }
      rows.push(row);
    }
  }
  return rows;
}
