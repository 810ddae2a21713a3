/**
 * A filter that traps in onConfigure: abort-configure throws when its plugin configuration is
 * "bad". Deployed with a good configuration, then switched to "bad" over ECDS (a configuration
 * change reuses the VM and configures a new root context). Then: what Envoy says (NACK or
 * not), what requests get, and whether an unrelated listener change (a new filter) still goes
 * through while the bad configuration is in force. Recovery: back to the good configuration.
 */
import fs from "node:fs";
import path from "node:path";
import { repoPath } from "../../../test/support/paths.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { ECDS_TYPE, LISTENER_TYPE, statChanges, type ScenarioContext } from "./context.ts";
import { healthy } from "./traffic.ts";
import type { FailPolicy, ScenarioResult } from "./types.ts";

const MARKER = "x-abort-configure";

export async function runAbortConfigure(ctx: ScenarioContext, policy: FailPolicy): Promise<ScenarioResult> {
  const name = ctx.freshName(`abort-configure-${policy}`);
  await ctx.deploy("abort-configure", name, policy, MARKER);
  const notes: string[] = [];
  const statsBefore = await ctx.wasmStats();
  const since = performance.now();
  await ctx.api.setConfiguration(name, "bad");
  const ecds = await ctx.settled(ECDS_TYPE, since);
  notes.push(`ECDS update with configuration "bad": ${ecds === "acked" ? "ACKed" : ecds.slice(0, 200)}`);
  const other = await ctx.traffic.burst(5);
  const ran = other.filter((a) => a.headers[MARKER] !== undefined).length;
  notes.push(`${name} ran on ${ran}/${other.length} requests after the change`);
  notes.push(`wasm stats changed: ${statChanges(statsBefore, await ctx.wasmStats())}`);

  // Blast radius on the control plane: does an unrelated listener change still apply?
  const bystander = ctx.freshName("bystander");
  const addHeader = ctx.stack.modules.get("add-header")!;
  const ldsSince = performance.now();
  const up = await ctx.api.upload(bystander, addHeader, "add-header");
  if (up.status !== 200) throw new Error(`upload ${bystander}: ${up.status} ${JSON.stringify(up.json)}`);
  const lds = await ctx.settled(LISTENER_TYPE, ldsSince);
  notes.push(`an unrelated new filter (listener change) while "bad" is in force: ${lds === "acked" ? "ACKed" : lds.slice(0, 200)}`);
  const alive = await ctx.envoyAlive();
  const controlPlane = ctx.controlPlaneView(since, "runtime failure only (no NACK)");

  // Recovery: the good configuration again. Traffic never broke (Envoy kept the last accepted
  // configuration); what needs recovering is the listener, which Envoy keeps rejecting.
  const t0 = performance.now();
  await ctx.api.setConfiguration(name, undefined);
  const ecdsBack = await ctx.settled(ECDS_TYPE, t0);
  let ms: number | null = null;
  if (lds === "acked") {
    ms = Math.round(performance.now() - t0);
  } else {
    // The rejected listener version is never re-sent: the new filter stays off until the next
    // listener change. Make one (the bystander's position) and time until Envoy accepts it.
    const stillOff = await ctx.traffic.send();
    notes.push(`after the good configuration is back (ECDS ${ecdsBack}), the new filter runs: ${(stillOff.headers["x-wasm-filter"] ?? "").split(",").length > 1 ? "yes" : "no (its listener version stays rejected; nothing re-sends it)"}`);
    const order = await ctx.api.call("PUT", `/api/filters/${bystander}/order`, { order: 99 });
    if (order.status !== 200) throw new Error(`order of ${bystander}: ${order.status}`);
    const relisted = await ctx.settled(LISTENER_TYPE, t0);
    if (relisted === "acked") ms = Math.round(performance.now() - t0);
    notes.push(`next listener change after recovery: ${relisted === "acked" ? "ACKed" : relisted.slice(0, 120)}`);
  }
  // Leave nothing switched on for later scenarios.
  await ctx.api.switchFilter(bystander, false);
  await ctx.api.switchFilter(name, false);
  return {
    scenario: "abort-configure", what: "throws in onConfigure when its configuration is \"bad\" (set over ECDS)", failPolicy: policy,
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => healthy(a)),
    controlPlane,
    recovery: { action: lds === "acked" ? "good configuration (ECDS)" : "good configuration (ECDS) + a new listener version", ms },
    notes,
  };
}

/**
 * The same fixture whose very first configuration is "bad" (a new filter folder whose
 * filter.json says so): the VM starts and onConfigure traps before the filter ever ran.
 * Recovery: remove the folder (the filter leaves the chain: a listener change).
 */
export async function runAbortAtStart(ctx: ScenarioContext): Promise<ScenarioResult> {
  const name = ctx.freshName("abort-at-start");
  const dir = path.join(ctx.stack.filtersDir, name);
  const notes: string[] = [];
  const since = performance.now();
  fs.cpSync(repoPath("test", "fixtures", "filters", "abort-configure"), dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: 20, configuration: "bad", failPolicy: "closed" }));
  await waitFor(async () => {
    const f = await ctx.api.filter(name);
    if (f?.status === "error") throw new Error(`${name} failed to build: ${String(f.error)}`);
    return f?.status === "ok" || undefined;
  }, { what: `${name} built`, timeoutMs: ctx.opts.waitMs, details: () => ctx.stack.details() });
  const lds = await ctx.settled(LISTENER_TYPE, since).catch((e: unknown) => `no answer: ${String(e).split("\n")[0]}`);
  const ecds = await ctx.settled(ECDS_TYPE, since).catch((e: unknown) => `no answer: ${String(e).split("\n")[0]}`);
  notes.push(`listener with the new filter: ${lds === "acked" ? "ACKed" : lds.slice(0, 160)}`);
  notes.push(`its ECDS config: ${ecds === "acked" ? "ACKed" : ecds.slice(0, 160)}`);
  await ctx.listenersWarm();
  const other = await ctx.traffic.burst(5);
  notes.push(`${name} ran on ${other.filter((a) => a.headers[MARKER] !== undefined).length}/5 requests`);
  const controlPlane = ctx.controlPlaneView(since, "no NACK: Envoy ACKed a filter whose VM failed to start");
  // While it sits in the chain without a VM, does an unrelated listener change still apply?
  const bystander = ctx.freshName("bystander");
  const ldsSince = performance.now();
  const up = await ctx.api.upload(bystander, ctx.stack.modules.get("add-header")!, "add-header");
  if (up.status !== 200) throw new Error(`upload ${bystander}: ${up.status} ${JSON.stringify(up.json)}`);
  const blocked = await ctx.settled(LISTENER_TYPE, ldsSince);
  notes.push(`an unrelated new filter (listener change) meanwhile: ${blocked === "acked" ? "ACKed" : blocked.slice(0, 200)}`);
  await ctx.api.switchFilter(bystander, false);
  const alive = await ctx.envoyAlive();
  const t0 = performance.now();
  fs.rmSync(dir, { recursive: true, force: true });
  let ms: number | null = null;
  try {
    await waitFor(async () => (await ctx.api.filter(name)) === undefined || undefined, { what: `${name} removed`, timeoutMs: ctx.opts.waitMs });
    const relisted = await ctx.settled(LISTENER_TYPE, t0);
    notes.push(`listener without it: ${relisted === "acked" ? "ACKed" : relisted.slice(0, 160)}`);
    await ctx.until("healthy traffic without the filter", healthy);
    ms = Math.round(performance.now() - t0);
  } catch (err) {
    notes.push(`recovery: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
  }
  return {
    scenario: "abort-configure at VM start", what: "a new filter whose first configuration is \"bad\" (filter.json)", failPolicy: "closed",
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => typeof a.outcome === "number" && a.goodRan),
    controlPlane, recovery: { action: "remove the filter folder (listener change)", ms }, notes,
  };
}
