/**
 * One reload scenario under one kind of load: load runs for the whole time; after a quiet lead,
 * an action every `intervalMs`; the control plane's API is polled alongside (CpWatch). Then, per
 * action, where its time went:
 *   action -> built        builtAt from GET /api/filters (of which compile: buildMs)
 *   built  -> sent         the Envoy's sentVersion for the type changed (GET /api/clients, polled)
 *   sent   -> ACKed        ackedVersion = that version (for an edit this includes Envoy's NACK of
 *                          the code-cache miss, its module download and the control plane's re-send)
 *   ACKed  -> first new    first response under load that shows the change (negative: Envoy
 *                          served it before the poll saw the ACK)
 * and latency inside reload windows, [action, max(action + 1 s, first new + 250 ms)), vs outside.
 */
import os from "node:os";
import { waitFor } from "../../test/support/wait.ts";
import { sleep } from "./cleanup.ts";
import { CpWatch } from "./cp-watch.ts";
import { closedLoop } from "./load-closed.ts";
import { openLoop } from "./load-open.ts";
import { rssMiB } from "./proc.ts";
import type { ReloadScenario } from "./reload-actions.ts";
import { timeline, type ActionTimeline, type Taken } from "./reload-timeline.ts";
import { startProbe } from "./probe.ts";
import { nowMs } from "./samples.ts";
import type { ProductStack } from "./stacks.ts";
import { latenciesWhere, series, summarize, type Bucket, type LatencySummary } from "./stats.ts";
import type { LoadMode } from "./steady.ts";

export interface ReloadRunOptions {
  mode: LoadMode;
  rate: number;
  connections: number;
  leadMs: number;
  intervalMs: number;
  actions: number;
  tailMs: number;
  windowMs: number;
  signal: AbortSignal;
  log: (line: string) => void;
}

export interface ReloadResult {
  kind: string;
  title: string;
  mode: LoadMode;
  load: string;
  durationMs: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  errorKinds: Record<string, number>;
  /** Load responses that said `connection: close` (Envoy draining a listener's connections). */
  connectionCloses: number;
  /** The fresh-connection probe's requests (see probe.ts); failures count like the load's. */
  probe: { requests: number; non2xx: number; socketErrors: number; errorKinds: Record<string, number> };
  inside: LatencySummary;
  outside: LatencySummary;
  windows: [number, number][];
  /**
   * Per action: p99 inside its window over p99 of the second before the action (when that second
   * is outside every window). Paired in time, so load from elsewhere that comes and goes over
   * seconds (other work on a shared machine) mostly cancels; NaN where there was no quiet second.
   */
  localRatios: number[];
  actions: ActionTimeline[];
  series: Bucket[];
  envoy: { before: Record<string, number>; after: Record<string, number> };
  /** The CPUs the control plane's builds were confined to (CP_BUILD_CPUS). */
  buildCpus?: string;
  /** Envoy's worker threads' CPUs when they were split from its other threads (which then ran on buildCpus). */
  envoyWorkerCpus?: string;
  loadavg: number[];
  polls: number;
}

const ENVOY_STATS = [
  "wasm.envoy.wasm.runtime.v8.created",
  "wasm.envoy.wasm.runtime.v8.active",
  "listener_manager.listener_modified",
  "listener_manager.listener_in_place_updated",
  "listener_manager.total_listeners_draining",
  "http.ingress_http.downstream_rq_5xx",
  "http.ingress_http.downstream_cx_drain_close",
  "server.memory_allocated",
];

async function envoyStats(stack: ProductStack): Promise<Record<string, number>> {
  const r = await stack.envoy.admin("/stats?format=json");
  const all = (JSON.parse(r.body) as { stats?: { name?: string; value?: unknown }[] }).stats ?? [];
  const out: Record<string, number> = {};
  for (const s of all) if (s.name && ENVOY_STATS.includes(s.name) && typeof s.value === "number") out[s.name] = s.value;
  out["rss_mib"] = rssMiB(stack.envoy.pid);
  return out;
}

/** Waits until the Envoy has ACKed every type's latest version (a clean start). */
async function settled(stack: ProductStack): Promise<void> {
  await waitFor(async () => {
    const c = (await stack.cp.clients()).find((x) => x.node.id === stack.nodeId);
    return c !== undefined && Object.values(c.types).every((t) => t.sentVersion !== null && t.ackedVersion === t.sentVersion);
  }, { what: `${stack.nodeId} to ACK everything`, timeoutMs: 60_000, intervalMs: 50 });
}

/** Takes the actions on schedule; returns what was done and when. */
async function drive(stack: ProductStack, scenario: ReloadScenario, count: number, origin: number, watch: CpWatch, o: ReloadRunOptions, signal: AbortSignal): Promise<Taken[]> {
  const taken: Taken[] = [];
  for (let i = 0; i < count && !signal.aborted; i++) {
    await sleep(origin + o.leadMs + i * o.intervalMs - nowMs(), signal);
    if (signal.aborted) break;
    const filters = await stack.cp.filters();
    const sentBefore = watch.current(scenario.xdsType, "sent");
    const at = nowMs();
    const action = await scenario.act(i);
    taken.push({ action, at, xdsType: scenario.xdsType, sentBefore, shaBefore: filters.find((f) => f.name === action.buildOf)?.sha256 });
  }
  return taken;
}

export async function runReload(stack: ProductStack, scenario: ReloadScenario, o: ReloadRunOptions): Promise<ReloadResult> {
  // `npm run bench` stacks confine the control plane's builds (CP_BUILD_CPUS); bench/run.ts places
  // Envoy's threads for the reloads; bench:reload compares placements (reload-variants.ts).
  const result = await runReloadAsIs(stack, scenario, o);
  return {
    ...result,
    ...(stack.buildCpus !== undefined ? { buildCpus: stack.buildCpus } : {}),
    ...(stack.envoyWorkerCpus !== undefined ? { envoyWorkerCpus: stack.envoyWorkerCpus } : {}),
  };
}

async function runReloadAsIs(stack: ProductStack, scenario: ReloadScenario, o: ReloadRunOptions): Promise<ReloadResult> {
  const count = scenario.evenActions && o.actions % 2 === 1 ? o.actions + 1 : o.actions;
  await settled(stack);
  const before = await envoyStats(stack);
  const watch = new CpWatch(stack.cp.adminUrl, stack.nodeId);
  await watch.start();
  const durationMs = o.leadMs + (count - 1) * o.intervalMs + o.tailMs;
  // Ends the load early on Ctrl-C or when an action fails.
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  o.signal.addEventListener("abort", onAbort, { once: true });
  const origin = nowMs();
  const probe = startProbe(stack.url);
  const load = o.mode === "open"
    ? openLoop({ url: stack.url, rate: o.rate, durationMs, signal: stop.signal })
    : closedLoop({ url: stack.url, connections: o.connections, durationMs, signal: stop.signal });
  const driving = drive(stack, scenario, count, origin, watch, o, stop.signal).catch((err: unknown) => {
    stop.abort();
    return err instanceof Error ? err : new Error(String(err));
  });
  const [result, taken] = await Promise.all([load, driving]);
  await Promise.all([watch.stop(), probe.stop()]);
  o.signal.removeEventListener("abort", onAbort);
  if (taken instanceof Error) throw taken;

  const { log } = result;
  const actions = taken.map((t, i) => timeline(t, taken[i + 1]?.at ?? result.endedAt, result.startedAt, watch, log, probe.log));
  const windows: [number, number][] = actions.map((a) => [a.at, Math.max(a.at + o.windowMs, (a.firstNewAt ?? -Infinity) + 250)]);
  const inWindow = (start: number): boolean => {
    const t = start - result.startedAt;
    return windows.some(([a, b]) => t >= a && t < b);
  };
  const p99Between = (a: number, b: number): number =>
    summarize(latenciesWhere(log, (s) => s - result.startedAt >= a && s - result.startedAt < b)).p99;
  const localRatios = windows.map(([a, b], i) => {
    const quietFrom = a - 1000;
    if (quietFrom < 0 || windows.some(([x, y], j) => j !== i && x < a && y > quietFrom)) return NaN;
    return p99Between(a, b) / p99Between(quietFrom, a);
  });
  const after = await envoyStats(stack);
  return {
    kind: scenario.kind,
    title: scenario.title,
    mode: o.mode,
    load: o.mode === "open" ? `open loop ${o.rate} req/s` : `closed loop ${o.connections} connections`,
    durationMs: result.endedAt - result.startedAt,
    requests: log.count,
    non2xx: log.non2xx(),
    socketErrors: log.socketErrors(),
    errorKinds: log.errorKinds,
    connectionCloses: result.closes,
    probe: { requests: probe.log.count, non2xx: probe.log.non2xx(), socketErrors: probe.log.socketErrors(), errorKinds: probe.log.errorKinds },
    inside: summarize(latenciesWhere(log, inWindow)),
    outside: summarize(latenciesWhere(log, (s) => !inWindow(s))),
    windows,
    localRatios,
    actions,
    series: series(log, result.startedAt, result.endedAt, 100),
    envoy: { before, after },
    loadavg: os.loadavg(),
    polls: watch.polls,
  };
}
