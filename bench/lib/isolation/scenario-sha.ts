/**
 * sha256 mismatch, for real: the tamper proxy between Envoy and the module server flips a byte
 * of one module, so what Envoy downloads does not match the sha256 the control plane announced.
 * Two ways in: (a) a new filter (Envoy fetches while the listener warms), (b) an update of a
 * running filter (Envoy NACKs the code-cache miss, fetches in the background, the control plane
 * re-sends). Recovery: (a) disable the filter, (b) roll back to the module that ran before.
 */
import { waitFor } from "../../../test/support/wait.ts";
import { ECDS_TYPE, LISTENER_TYPE, type ScenarioContext } from "./context.ts";
import { healthy, type Answer } from "./traffic.ts";
import type { FailPolicy, ScenarioResult } from "./types.ts";
import { withNonce } from "./wasm-bytes.ts";
import { createHash } from "node:crypto";
import { DEFAULT_FAIL_POLICY } from "../../../controlplane/registry/effective.ts";

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
/** add-header's response header count: the seed plus its running copies. */
const copies = (a: Answer): number => (a.outcome === 200 ? (a.headers["x-wasm-filter"] ?? "").split(",").filter((s) => s.trim() === "add-header").length : 0);

async function fetchFailures(ctx: ScenarioContext): Promise<number> {
  return (await ctx.stack.envoy.stat("wasm.remote_load_fetch_failures").catch(() => undefined)) ?? 0;
}

/** Waits (bounded) until Envoy counted a failed fetch; says how it went. */
async function awaitFetchFailure(ctx: ScenarioContext, before: number, sha: string): Promise<string> {
  const counted = await waitFor(async () => (await fetchFailures(ctx)) > before || undefined, { what: "a failed module fetch", timeoutMs: ctx.opts.waitMs })
    .then(() => true, () => false);
  const after = await fetchFailures(ctx);
  return `${counted ? "Envoy counted the failed fetch" : `no failed fetch counted within ${ctx.opts.waitMs} ms`} (wasm.remote_load_fetch_failures ${before} -> ${after}); ${ctx.stack.proxy.fetches(sha)} download(s) of the tampered module`;
}

/**
 * Only under the default policy: the admin API sets a fail policy on a filter that exists, so an
 * uploaded filter's first push has the default; a second push while Envoy's fetch is failing
 * would measure Envoy's cache of the failure ("failed to load (cached)") instead.
 */
export async function runShaNewFilter(ctx: ScenarioContext): Promise<ScenarioResult> {
  const policy: FailPolicy = DEFAULT_FAIL_POLICY;
  const good = ctx.stack.modules.get("add-header")!;
  const bytes = withNonce(good);
  const sha = sha256(bytes);
  ctx.stack.proxy.tamper(sha);
  const name = ctx.freshName(`sha-new-${policy}`);
  const notes: string[] = [];
  const failuresBefore = await fetchFailures(ctx);
  const since = performance.now();
  const up = await ctx.api.upload(name, bytes, "add-header");
  if (up.status !== 200) throw new Error(`upload ${name}: ${up.status} ${JSON.stringify(up.json)}`);
  const lds = await ctx.settled(LISTENER_TYPE, since).catch((e: unknown) => `no answer: ${String(e).split("\n")[0]}`);
  notes.push(`listener with the new filter: ${lds === "acked" ? "ACKed" : lds.slice(0, 160)}`);
  notes.push(await awaitFetchFailure(ctx, failuresBefore, sha));
  const ecds = await ctx.settled(ECDS_TYPE, since).catch((e: unknown) => `no answer: ${String(e).split("\n")[0]}`);
  notes.push(`its ECDS config: ${ecds === "acked" ? "ACKed" : ecds.slice(0, 160)}`);
  await ctx.listenersWarm();
  const other = await ctx.traffic.burst(5);
  notes.push(`the new filter ran on ${other.filter((a) => copies(a) >= 2).length}/5 requests`);
  const alive = await ctx.envoyAlive();
  const controlPlane = ctx.controlPlaneView(since, "no NACK: Envoy ACKed a filter it has no code for");
  ctx.stack.proxy.untamper(sha);
  const ms = await ctx.recover(() => ctx.api.switchFilter(name, false));
  return {
    scenario: "sha256-mismatch (new filter)", what: "Envoy downloads bytes whose sha256 differs from the announced one", failPolicy: policy,
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => typeof a.outcome === "number" && a.goodRan),
    controlPlane, recovery: { action: "disable via API (RDS)", ms }, notes,
  };
}

export async function runShaUpdate(ctx: ScenarioContext, policy: FailPolicy): Promise<ScenarioResult> {
  const good = ctx.stack.modules.get("add-header")!;
  const name = ctx.freshName(`sha-update-${policy}`);
  const first = withNonce(good);
  const up = await ctx.api.upload(name, first, "add-header");
  if (up.status !== 200) throw new Error(`upload ${name}: ${up.status} ${JSON.stringify(up.json)}`);
  // One step at a time: the module fetched and running first, then the policy (see above).
  await ctx.until(`${name} running beside add-header`, (a) => healthy(a) && copies(a) >= 2);
  const policySet = performance.now();
  await ctx.api.setFailPolicy(name, policy);
  await ctx.settled(ECDS_TYPE, policySet);
  await ctx.until(`${name} running with fail policy ${policy}`, (a) => healthy(a) && copies(a) >= 2);

  const next = withNonce(good);
  const sha = sha256(next);
  ctx.stack.proxy.tamper(sha);
  const notes: string[] = [];
  const failuresBefore = await fetchFailures(ctx);
  const since = performance.now();
  const up2 = await ctx.api.upload(name, next, "add-header");
  if (up2.status !== 200) throw new Error(`upload ${name} (update): ${up2.status} ${JSON.stringify(up2.json)}`);
  notes.push(await awaitFetchFailure(ctx, failuresBefore, sha));
  const ecds = await ctx.settled(ECDS_TYPE, since).catch((e: unknown) => `no answer: ${String(e).split("\n")[0]}`);
  notes.push(`ECDS update: ${ecds === "acked" ? "ACKed" : ecds.slice(0, 160)}; cache-miss re-sends by the control plane: ${ctx.nacks.resendsSince(since)}`);
  const other = await ctx.traffic.burst(5);
  notes.push(`${name} ran on ${other.filter((a) => copies(a) >= 2).length}/5 requests after the update`);
  const alive = await ctx.envoyAlive();
  // Expected: the re-send after the fetch is NACKed (the code never loaded), the old module stays.
  const controlPlane = ctx.controlPlaneView(since, "no NACK beyond the planned code-cache miss");
  ctx.stack.proxy.untamper(sha);
  const ms = await ctx.recover(async () => {
    const r = await ctx.api.call("POST", `/api/filters/${name}/rollback`, { sha256: sha256(first) });
    if (r.status !== 200) throw new Error(`rollback ${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }, (a) => healthy(a) && copies(a) >= 2);
  await ctx.api.switchFilter(name, false);
  return {
    scenario: "sha256-mismatch (update)", what: "a running filter's new module arrives with the wrong sha256", failPolicy: policy,
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => typeof a.outcome === "number" && a.goodRan),
    controlPlane, recovery: { action: "rollback to the previous module (API)", ms }, notes,
  };
}
