/**
 * A filter that traps inside a request callback when a request asks it to: abort-request
 * (throws -> abort -> proc_exit) and memory-grow (allocates until linear memory cannot grow,
 * then the allocator traps). Sends the trigger, then ordinary requests, then recovers: under
 * FAIL_RELOAD by waiting for Envoy to rebuild the VM, otherwise by disabling the filter.
 */
import { rssMiB } from "../proc.ts";
import { statChanges, type ScenarioContext } from "./context.ts";
import type { Fixture } from "./stack.ts";
import { healthy, type Answer } from "./traffic.ts";
import type { FailPolicy, ScenarioResult } from "./types.ts";

export interface TrapSpec {
  fixture: Extract<Fixture, "abort-request" | "memory-grow">;
  what: string;
  /** Response header the fixture adds when it runs normally. */
  marker: string;
  trigger: Record<string, string>;
  /** Per trigger request (memory-grow needs time to fill 1 GiB). */
  triggerTimeoutMs: number;
}

export const ABORT_REQUEST: TrapSpec = {
  fixture: "abort-request", what: "throws (abort) in onRequestHeaders on x-crash: 1", marker: "x-abort-request",
  trigger: { "x-crash": "1" }, triggerTimeoutMs: 5_000,
};

export const MEMORY_GROW: TrapSpec = {
  fixture: "memory-grow", what: "keeps 16 MiB buffers in onRequestHeaders on x-grow: 1 until memory runs out", marker: "x-memory-grow",
  trigger: { "x-grow": "1" }, triggerTimeoutMs: 30_000,
};

export async function runTrap(ctx: ScenarioContext, spec: TrapSpec, policy: FailPolicy): Promise<ScenarioResult> {
  const name = ctx.freshName(`${spec.fixture}-${policy}`);
  await ctx.deploy(spec.fixture, name, policy, spec.marker);
  const envoyPid = ctx.stack.envoy.pid;
  const notes: string[] = [];
  const rssBefore = rssMiB(envoyPid);
  const statsBefore = await ctx.wasmStats();
  const since = performance.now();

  const t0 = performance.now();
  const first = await ctx.traffic.send(spec.trigger, spec.triggerTimeoutMs);
  const firstMs = Math.round(performance.now() - t0);
  const second = await ctx.traffic.send(spec.trigger, spec.triggerTimeoutMs);
  const rssAfter = rssMiB(envoyPid);
  const other = await ctx.traffic.burst(5);
  const alive = await ctx.envoyAlive();
  notes.push(`first trigger answered ${String(first.outcome)} after ${firstMs} ms`);
  if (spec.fixture === "memory-grow") notes.push(`Envoy RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`);
  notes.push(`wasm stats changed: ${statChanges(statsBefore, await ctx.wasmStats())}`);
  const ranAfter = other.filter((a) => a.headers[spec.marker] !== undefined).length;
  notes.push(`${name} itself ran on ${ranAfter}/${other.length} ordinary requests after the trap`);
  const controlPlane = ctx.controlPlaneView(since, "runtime failure only (no NACK)");

  const recovery = await recoverFrom(ctx, name, spec.marker, policy, notes);
  if (spec.fixture === "memory-grow") notes.push(`Envoy RSS after the recovery step: ${rssMiB(envoyPid).toFixed(0)} MiB`);
  const goodRanOnOther = other.filter((a) => typeof a.outcome === "number").every((a) => a.goodRan);
  notes.push(`add-header's response header on ordinary answers while ${name} failed: ${goodRanOnOther ? "yes" : "no"}`);
  await ctx.api.switchFilter(name, false).catch(() => undefined);
  return {
    scenario: spec.fixture, what: spec.what, failPolicy: policy, envoyAlive: alive.alive, readyDuring: alive.ready,
    triggered: [first.outcome, second.outcome], other: other.map((a) => a.outcome),
    goodFilterUnaffected: recovery.goodAfter && other.every((a) => a.outcome !== "timeout" && a.outcome !== "reset"),
    controlPlane, recovery: { action: recovery.action, ms: recovery.ms }, notes,
  };
}

/** FAIL_RELOAD: wait for the VM to come back on its own; otherwise switch the filter off. */
async function recoverFrom(ctx: ScenarioContext, name: string, marker: string, policy: FailPolicy, notes: string[]): Promise<{ action: string; ms: number | null; goodAfter: boolean }> {
  if (policy === "reload") {
    const t0 = performance.now();
    try {
      // Back means the filter itself answers again (its marker), not merely that it was switched off.
      // Probed every 100 ms; only the crash itself (the reload after it) counts toward auto-disable.
      await ctx.until(`${name} back after FAIL_RELOAD`, (a: Answer) => healthy(a) && a.headers[marker] !== undefined, ctx.opts.waitMs, 100);
      return { action: "none (FAIL_RELOAD rebuilt the VM)", ms: Math.round(performance.now() - t0), goodAfter: true };
    } catch {
      const f = await ctx.api.filter(name);
      notes.push(`FAIL_RELOAD did not bring the filter back within the deadline${f?.enabled === false ? " (the control plane had disabled it)" : ""}`);
    }
  }
  const ms = await ctx.recover(() => ctx.api.switchFilter(name, false));
  // Switched back on: is the poisoned VM still there (same module, same vm_id)?
  await ctx.api.switchFilter(name, true);
  await ctx.routesSynced();
  const again = await ctx.traffic.burst(3);
  notes.push(`re-enabled without a new module: ${again.map((a) => String(a.outcome)).join(", ")}`);
  return { action: "disable via API (RDS)", ms, goodAfter: ms !== null };
}
