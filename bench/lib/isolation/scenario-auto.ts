/**
 * The control plane's own protection (controlplane/health/): under FAIL_RELOAD, Envoy counts
 * requests that met a failed VM (wasm.<filter>.vm_reload_*), streams its stats to the control
 * plane, and the control plane disables (or rolls back) a filter that keeps failing. A copy of
 * abort-request is made to fail on a steady trickle of requests until the control plane acts.
 */
import { waitFor } from "../../../test/support/wait.ts";
import type { ScenarioContext } from "./context.ts";
import { ABORT_REQUEST } from "./scenario-trap.ts";
import { AUTO_DISABLE_AFTER } from "./stack.ts";
import { healthy } from "./traffic.ts";
import type { Outcome, ScenarioResult } from "./types.ts";

export async function runAutoDisable(ctx: ScenarioContext): Promise<ScenarioResult> {
  const name = ctx.freshName("auto-disable");
  await ctx.deploy("abort-request", name, "reload", ABORT_REQUEST.marker);
  const notes: string[] = [];
  const since = performance.now();
  const triggered: Outcome[] = [];
  // One failing request after another (bounded by the wait deadline) until the filter is off.
  const acted = await waitFor(async () => {
    triggered.push((await ctx.traffic.send(ABORT_REQUEST.trigger, 2_000)).outcome);
    const f = await ctx.api.filter(name);
    if (f && (f.enabled === false || f.pinnedSha256 !== null)) return f.enabled === false ? "disabled" : `rolled back to ${String(f.pinnedSha256).slice(0, 12)}`;
    return undefined;
  }, { what: `the control plane to act on ${name}'s failures`, timeoutMs: ctx.opts.waitMs, intervalMs: 20 }).catch(() => undefined);
  const actedMs = Math.round(performance.now() - since);
  let ms: number | null = null;
  if (acted !== undefined) {
    try {
      await ctx.until("healthy traffic after the automatic action", healthy);
      ms = Math.round(performance.now() - since);
    } catch {
      ms = null;
    }
  }
  notes.push(acted === undefined
    ? `the control plane did not act within ${ctx.opts.waitMs} ms (${triggered.length} failing requests sent)`
    : `control plane ${acted} the filter ${actedMs} ms after the first failure, after ${triggered.length} failing requests (CP_AUTO_DISABLE_AFTER=${AUTO_DISABLE_AFTER} failures as Envoy counts them, stats flushed every 1 s)`);
  const other = await ctx.traffic.burst(3);
  const alive = await ctx.envoyAlive();
  await ctx.api.switchFilter(name, false).catch(() => undefined);
  return {
    scenario: "abort-request + auto-disable", what: `abort-request failing on every request until the control plane acts (CP_AUTO_DISABLE_AFTER=${AUTO_DISABLE_AFTER})`,
    failPolicy: "reload", envoyAlive: alive.alive, readyDuring: alive.ready, triggered, other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every(healthy), controlPlane: acted === undefined ? "runtime failure only; no automatic action" : `runtime failures in Envoy's stats -> ${acted} automatically`,
    recovery: { action: acted === undefined ? "none taken" : `automatic (${acted})`, ms }, notes,
  };
}
