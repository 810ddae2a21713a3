/**
 * A filter that never returns: spin loops forever in onRequestHeaders on `x-spin: 1`. Envoy
 * puts no time limit on a Wasm callback, so the worker thread running it is lost. Watched for
 * a bounded window (ordinary requests, admin /ready, a disable through the API, Envoy's
 * watchdog stats, its CPU), then Envoy is killed and restarted by the harness: that is the only
 * recovery, and its time is what the table reports.
 */
import { waitFor } from "../../../test/support/wait.ts";
import { cpuMs } from "../proc.ts";
import { ROUTE_TYPE, type ScenarioContext } from "./context.ts";
import { healthy, type Answer } from "./traffic.ts";
import type { Outcome, ScenarioResult } from "./types.ts";

const MARKER = "x-spin";

async function watchdogStats(ctx: ScenarioContext): Promise<Record<string, number>> {
  try {
    return Object.fromEntries(Object.entries(await ctx.stack.envoy.stats()).filter(([k]) => /watchdog/.test(k)));
  } catch {
    return {};
  }
}

/** Stuck workers the control plane reports for this Envoy, and how old its last stats flush is. */
async function stuckSeen(ctx: ScenarioContext): Promise<{ reporters: number; stuck: string[]; lagMs: number | null; stalledSince: string | null }> {
  const r = await ctx.api.call("GET", "/api/health");
  const reporters = (r.json as { statsReporters?: { lastStatsAt: string; statsStalledSince: string | null; stuckWorkers: { worker: string; megaMisses: number }[] }[] }).statsReporters ?? [];
  const stuck = reporters.flatMap((x) => x.stuckWorkers.map((w) => `${w.worker} (${w.megaMisses} mega miss${w.megaMisses === 1 ? "" : "es"})`));
  const last = Math.max(...reporters.map((x) => Date.parse(x.lastStatsAt)));
  return { reporters: reporters.length, stuck, lagMs: Number.isFinite(last) ? Date.now() - last : null, stalledSince: reporters.find((x) => x.statsStalledSince !== null)?.statsStalledSince ?? null };
}

export async function runSpin(ctx: ScenarioContext): Promise<ScenarioResult> {
  try {
    return await spinAndRestart(ctx);
  } catch (err) {
    // Never leave a stuck Envoy to the scenarios after this one.
    if (ctx.stack.envoy.running) await ctx.stack.restartEnvoy(2_000).catch(() => undefined);
    throw err;
  }
}

async function spinAndRestart(ctx: ScenarioContext): Promise<ScenarioResult> {
  const name = ctx.freshName("spin");
  await ctx.deploy("spin", name, "closed", MARKER);
  const notes: string[] = [];
  const envoy = ctx.stack.envoy;
  const window = ctx.opts.spinWindowMs;
  const dogBefore = await watchdogStats(ctx);
  // Envoy's stats stream opens with its first flush after start-up; the alert needs it, and two
  // flushes for the control plane to know the flush interval.
  let firstLag: number | null = null;
  const seenBefore = await waitFor(async () => {
    const s = await stuckSeen(ctx);
    if (s.reporters === 0 || s.lagMs === null) return undefined;
    if (firstLag === null) firstLag = Date.now() - s.lagMs;
    return Date.now() - s.lagMs > firstLag ? s : undefined;
  }, { what: "Envoy's stats stream to the control plane", timeoutMs: ctx.opts.waitMs }).catch(() => ({ reporters: 0, stuck: [], lagMs: null, stalledSince: null }));
  const cpuBefore = cpuMs(envoy.pid);
  const since = performance.now();

  const spinning: Promise<Answer> = ctx.traffic.send({ "x-spin": "1" }, window + 3_000);
  const other: Outcome[] = [];
  const ready: string[] = [];
  let disabled = false;
  let routesAcked = "not tried";
  const t0 = performance.now();
  while (performance.now() - t0 < window) {
    // Half-way: switch the filter off through the API. The route update is applied by the
    // main thread, but the stuck worker never picks it up.
    if (!disabled && performance.now() - t0 > window / 2) {
      disabled = true;
      const before = performance.now();
      await ctx.api.switchFilter(name, false);
      routesAcked = await ctx.settled(ROUTE_TYPE, before).catch((err: unknown) => `no answer (${err instanceof Error ? err.message.split("\n")[0] : String(err)})`);
    }
    const [a, r] = await Promise.all([
      ctx.traffic.send({}, 1_000),
      envoy.admin("/ready", { timeoutMs: 1_000 }).then((x) => `${x.status} ${x.body.trim()}`, () => "no answer"),
    ]);
    other.push(a.outcome);
    ready.push(r);
  }
  const cpuDuring = cpuMs(envoy.pid) - cpuBefore;
  const elapsed = performance.now() - t0;
  const alive = await ctx.envoyAlive();
  const dogAfter = await watchdogStats(ctx);
  notes.push(`window ${Math.round(elapsed)} ms: Envoy used ${Math.round(cpuDuring)} ms CPU (${Math.round((100 * cpuDuring) / elapsed)}% of one core)`);
  notes.push(`admin /ready during the spin: ${[...new Set(ready)].join(" | ")}`);
  notes.push(`filter disabled through the API half-way: routes ${routesAcked === "acked" ? "ACKed by Envoy (main thread)" : routesAcked}; ordinary requests still stuck: ${other.slice(Math.floor(other.length / 2)).every((o) => o === "timeout") ? "yes" : "no"}`);
  const dogChanged = Object.entries(dogAfter).filter(([k, v]) => v !== (dogBefore[k] ?? 0)).map(([k, v]) => `${k} +${v - (dogBefore[k] ?? 0)}`);
  notes.push(`watchdog stats changed: ${dogChanged.length > 0 ? dogChanged.join(", ") : "none"}`);
  // What the control plane makes of it (controlplane/health): Envoy flushes stats only after
  // merging every worker's, so a stuck worker silences the stats stream while it stays open.
  // The alert comes a few missed flushes after the spin began: wait for it (bounded).
  const seen = await waitFor(async () => {
    const s = await stuckSeen(ctx);
    return s.stalledSince !== null ? s : undefined;
  }, { what: "the control plane's stuck-worker alert", timeoutMs: ctx.opts.waitMs }).catch(() => stuckSeen(ctx));
  const alertAfterMs = Math.round(performance.now() - since);
  notes.push(`before the spin: ${seenBefore.reporters} stats stream(s), last flush ${String(seenBefore.lagMs)} ms ago`);
  notes.push(`control plane: ${seen.stalledSince !== null ? `stats stalled since ${seen.stalledSince} -> health.stuck alert, seen ${alertAfterMs} ms after the spin began` : "no alert"}; last flush ${seen.lagMs === null ? "never" : `${seen.lagMs} ms ago`}; watchdog reports: ${seen.stuck.join(", ") || "none (they travel with the stalled stats)"}`);
  const controlPlane = seen.stalledSince !== null
    ? "no NACK; its stats stream went silent -> stuck-worker alert (API, event, log); nothing it pushes reaches the worker"
    : ctx.controlPlaneView(since, "nothing: no NACK, no error (Envoy's stream to the control plane is on the main thread and stays up)");

  // The only way out: kill Envoy. SIGTERM first; a stuck worker keeps it from exiting.
  const r0 = performance.now();
  const restart = await ctx.stack.restartEnvoy(2_000);
  const spinAnswer = await spinning;
  let ms: number | null = null;
  try {
    await ctx.until("healthy traffic through the restarted Envoy", healthy);
    ms = Math.round(performance.now() - r0);
  } catch {
    ms = null;
  }
  notes.push(`old Envoy ${restart.exit} (SIGTERM, then SIGKILL after 2 s); the new one was ready in ${restart.readyMs} ms; the spinning request ended as ${String(spinAnswer.outcome)}`);
  return {
    scenario: "spin", what: "loops forever in onRequestHeaders on x-spin: 1", failPolicy: "n/a",
    envoyAlive: alive.alive, readyDuring: [...new Set(ready)].join(" | "), triggered: [spinAnswer.outcome], other,
    goodFilterUnaffected: false, controlPlane,
    recovery: { action: "kill + restart Envoy (harness)", ms }, notes,
  };
}
