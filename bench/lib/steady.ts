/**
 * Steady-state scenarios: warm every target up, then run rounds in which every target gets the
 * same closed-loop run and the same open-loop run, interleaved (round r visits the targets
 * rotated by r), so drift in machine load spreads over all targets instead of biasing one.
 */
import os from "node:os";
import { sleep } from "./cleanup.ts";
import { closedLoop } from "./load-closed.ts";
import { openLoop } from "./load-open.ts";
import { cpuMs } from "./proc.ts";
import type { SampleLog } from "./samples.ts";
import type { Target } from "./stacks.ts";
import { latenciesWhere, summarize, type LatencySummary } from "./stats.ts";

export type LoadMode = "closed" | "open";

export interface SteadyOptions {
  rounds: number;
  closedMs: number;
  openMs: number;
  warmupMs: number;
  connections: number;
  rate: number;
  signal: AbortSignal;
  log: (line: string) => void;
}

/** One target, one load mode, one round. */
export interface RunStats {
  round: number;
  latency: LatencySummary;
  /** Answered requests per second over the run. */
  reqPerSec: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  errorKinds: Record<string, number>;
  durationMs: number;
  loadavg1: number;
  /** CPU (user+system) Envoy / the upstream used per answered request, microseconds. */
  envoyCpuUs?: number;
  upstreamCpuUs?: number;
  /** Open loop: how late sends were against their slots (p99, max ms). */
  sendLagP99?: number;
  sendLagMax?: number;
}

export interface SteadyResult {
  targetId: string;
  mode: LoadMode;
  runs: RunStats[];
}

function statsOf(round: number, log: SampleLog, startedAt: number, endedAt: number): RunStats {
  const lat = latenciesWhere(log);
  return {
    round,
    latency: summarize(lat),
    reqPerSec: (lat.length * 1000) / (endedAt - startedAt),
    requests: log.count,
    non2xx: log.non2xx(),
    socketErrors: log.socketErrors(),
    errorKinds: log.errorKinds,
    durationMs: endedAt - startedAt,
    loadavg1: os.loadavg()[0]!,
  };
}

async function runOnce(t: Target, mode: LoadMode, round: number, o: SteadyOptions): Promise<RunStats> {
  const envoyCpu0 = t.envoy ? cpuMs(t.envoy.pid) : NaN;
  const upstreamCpu0 = t.upstreamPid ? cpuMs(t.upstreamPid) : NaN;
  let stats: RunStats;
  if (mode === "closed") {
    const r = await closedLoop({ url: t.url, connections: o.connections, durationMs: o.closedMs, signal: o.signal });
    stats = statsOf(round, r.log, r.startedAt, r.endedAt);
  } else {
    const r = await openLoop({ url: t.url, rate: o.rate, durationMs: o.openMs, signal: o.signal });
    stats = { ...statsOf(round, r.log, r.startedAt, r.endedAt), sendLagP99: r.lag.p99, sendLagMax: r.lag.max };
  }
  const answered = stats.latency.count;
  if (t.envoy && answered > 0) stats.envoyCpuUs = ((cpuMs(t.envoy.pid) - envoyCpu0) * 1000) / answered;
  if (t.upstreamPid && answered > 0) stats.upstreamCpuUs = ((cpuMs(t.upstreamPid) - upstreamCpu0) * 1000) / answered;
  return stats;
}

export async function runSteady(targets: Target[], o: SteadyOptions): Promise<SteadyResult[]> {
  const results = new Map<string, SteadyResult>();
  for (const t of targets) for (const mode of ["closed", "open"] as const) results.set(`${t.id}/${mode}`, { targetId: t.id, mode, runs: [] });

  o.log(`warm-up: ${o.warmupMs} ms closed loop per target`);
  for (const t of targets) {
    if (o.signal.aborted) break;
    await closedLoop({ url: t.url, connections: o.connections, durationMs: o.warmupMs, signal: o.signal });
  }
  for (let round = 0; round < o.rounds && !o.signal.aborted; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const mode of ["closed", "open"] as const) {
      for (const t of order) {
        if (o.signal.aborted) break;
        const stats = await runOnce(t, mode, round, o);
        results.get(`${t.id}/${mode}`)!.runs.push(stats);
        // Let sockets close and Envoy settle between runs.
        await sleep(200, o.signal);
      }
    }
    o.log(`round ${round + 1}/${o.rounds} done (load avg ${os.loadavg().map((x) => x.toFixed(2)).join(" ")})`);
  }
  return [...results.values()];
}
