/**
 * The one protection Envoy has against a spin: its worker watchdog. With
 * `watchdogs.worker_watchdog.kill_timeout` in the bootstrap, a worker that stops answering the
 * watchdog for that long makes Envoy abort itself -- the whole process, every connection --
 * and a supervisor (systemd, Kubernetes) restarts it. Measured with an Envoy started with that
 * setting (`--config-yaml`), the spin fixture, and the harness playing the supervisor.
 */
import { healthy } from "./traffic.ts";
import type { ScenarioContext } from "./context.ts";
import type { ScenarioResult } from "./types.ts";

export const WATCHDOG_KILL_S = 2;

export async function runSpinWatchdog(ctx: ScenarioContext): Promise<ScenarioResult> {
  const notes: string[] = [];
  const watchdog = `watchdogs: {worker_watchdog: {kill_timeout: ${WATCHDOG_KILL_S}s}}`;
  await ctx.stack.restartEnvoy(2_000, ["--config-yaml", watchdog]);
  let watchdogEnvoy = true;
  try {
    const name = ctx.freshName("spin-watchdog");
    await ctx.deploy("spin", name, "closed", "x-spin");
    const envoy = ctx.stack.envoy;
    const since = performance.now();
    const spinning = ctx.traffic.send({ "x-spin": "1" }, 20_000);
    const bound = new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 15_000).unref());
    const exit = await Promise.race([envoy.exited, bound]);
    const exitMs = Math.round(performance.now() - since);
    const answer = await spinning;
    notes.push(exit === "still running"
      ? "Envoy was still running 15 s after the spin began"
      : `Envoy ${exit.signal ? `died on ${exit.signal}` : `exited with code ${String(exit.code)}`} ${exitMs} ms after the spin began (kill_timeout ${WATCHDOG_KILL_S} s); the spinning request ended as ${String(answer.outcome)}`);
    const why = envoy.tail(80).split("\n").filter((l) => /watchdog|Caught/i.test(l)).map((l) => l.replace(/^\[[^\]]*\]\[\d+\]/, "").trim());
    notes.push(`Envoy's log: ${why.slice(0, 2).join(" / ").slice(0, 300) || "(no watchdog line)"}`);
    await ctx.api.switchFilter(name, false);
    // The harness as the supervisor: start Envoy again (same bootstrap, no watchdog kill).
    const restart = await ctx.stack.restartEnvoy(2_000);
    watchdogEnvoy = false;
    notes.push(`restarted Envoy ready in ${restart.readyMs} ms`);
    let ms: number | null = null;
    try {
      await ctx.until("healthy traffic through the restarted Envoy", healthy);
      ms = Math.round(performance.now() - since);
    } catch {
      ms = null;
    }
    const alive = exit === "still running";
    return {
      scenario: "spin + Envoy watchdog", what: `spin with watchdogs.worker_watchdog.kill_timeout ${WATCHDOG_KILL_S}s in the bootstrap`, failPolicy: "n/a",
      envoyAlive: alive, readyDuring: alive ? "LIVE (watchdog did not fire)" : "process aborted by its watchdog", triggered: [answer.outcome], other: [],
      goodFilterUnaffected: false, controlPlane: "nothing before the crash; then the Envoy's streams close",
      recovery: { action: "Envoy aborts itself; supervisor (harness) restarts it", ms }, notes,
    };
  } finally {
    // Later scenarios get an Envoy as the others run it.
    if (watchdogEnvoy) await ctx.stack.restartEnvoy(2_000);
  }
}
