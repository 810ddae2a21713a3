/**
 * A filter that traps in onConfigure: abort-configure throws when its plugin configuration is
 * "bad". Both ways of getting "bad" to it are refused by the control plane's pre-flight
 * (controlplane/compile/preflight-gate.ts) before anything is pushed:
 *   - a running filter switched to "bad" over the admin API: a 400 with the trap message, no new
 *     ECDS version, Envoy keeps the good configuration;
 *   - a new filter whose first configuration is "bad" (filter.json): a build error in the API, the
 *     filter never reaches Envoy (no ECDS resource, no listener entry).
 * Then: what requests get, and whether an unrelated listener change (a new filter) goes through.
 * (Before the pre-flight, Envoy NACKed the first and ACKed the second, which then answered 503.)
 */
import fs from "node:fs";
import path from "node:path";
import { repoPath } from "../../../test/support/paths.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { ECDS_TYPE, LISTENER_TYPE, type ScenarioContext } from "./context.ts";
import { healthy } from "./traffic.ts";
import type { FailPolicy, ScenarioResult } from "./types.ts";

const MARKER = "x-abort-configure";

/** The served ECDS version, this filter's resource version in it, and what the Envoy ACKed. */
async function ecdsState(ctx: ScenarioContext, name: string): Promise<{ served?: string; resource?: string; acked?: string | null }> {
  type Served = Record<string, { version?: string; resources?: Record<string, string> }>;
  type Clients = { types: Record<string, { ackedVersion: string | null }> }[];
  const snapshot = (await ctx.api.call("GET", "/api/snapshot")).json as Served;
  const clients = (await ctx.api.call("GET", "/api/clients")).json as unknown as Clients;
  const out: { served?: string; resource?: string; acked?: string | null } = {};
  const ecds = snapshot[ECDS_TYPE];
  if (ecds?.version !== undefined) out.served = ecds.version;
  if (ecds?.resources?.[name] !== undefined) out.resource = ecds.resources[name];
  out.acked = clients[0]?.types[ECDS_TYPE]?.ackedVersion ?? null;
  return out;
}

/** The module's reason from a refusal, without the "<name>: refused before push: module ... with ...: " lead. */
function reasonOf(error: string): string {
  const reason = error.replace(/^.*?started as Envoy would run it, with (no configuration|configuration ".*?"): /s, "");
  return reason.split("\n")[0]!.slice(0, 160);
}

/** A new filter beside the others (a listener change): did Envoy ACK it? Switched off afterwards. */
async function bystanderChange(ctx: ScenarioContext): Promise<string> {
  const bystander = ctx.freshName("bystander");
  const since = performance.now();
  const up = await ctx.api.upload(bystander, ctx.stack.modules.get("add-header")!, "add-header");
  if (up.status !== 200) throw new Error(`upload ${bystander}: ${up.status} ${JSON.stringify(up.json)}`);
  const lds = await ctx.settled(LISTENER_TYPE, since);
  await ctx.api.switchFilter(bystander, false);
  return lds === "acked" ? "ACKed" : lds.slice(0, 200);
}

export async function runAbortConfigure(ctx: ScenarioContext, policy: FailPolicy): Promise<ScenarioResult> {
  const name = ctx.freshName("abort-configure");
  await ctx.deploy("abort-configure", name, policy, MARKER);
  const notes: string[] = [];
  await ctx.settled(ECDS_TYPE);
  const before = await ecdsState(ctx, name);
  const since = performance.now();
  const res = await ctx.api.call("PUT", `/api/filters/${name}/configuration`, { configuration: "bad" });
  const error = String(res.json.error ?? "");
  const after = await ecdsState(ctx, name);
  const pushed = after.served !== before.served || after.resource !== before.resource || after.acked !== before.acked;
  notes.push(`PUT configuration "bad": ${res.status}${error ? ` ${error.slice(0, 600)}` : ""}`);
  notes.push(`ECDS afterwards: ${pushed
    ? `CHANGED (${JSON.stringify(before)} -> ${JSON.stringify(after)})`
    : `unchanged (version ${after.served}, Envoy ACKed ${after.acked})`}`);
  const dump = JSON.stringify(await ctx.stack.envoy.configDump("ecds_filters"));
  const envoyGotBad = dump.includes('"value":"bad"');
  notes.push(`Envoy's ECDS config holds configuration "bad": ${envoyGotBad ? "YES" : "no"}`);
  notes.push(`configuration in the API afterwards: ${JSON.stringify((await ctx.api.filter(name))?.configuration ?? null)}`);
  const other = await ctx.traffic.burst(5);
  notes.push(`${name} ran on ${other.filter((a) => a.headers[MARKER] !== undefined).length}/${other.length} requests after the refusal`);
  notes.push(`an unrelated new filter (listener change) afterwards: ${await bystanderChange(ctx)}`);
  const alive = await ctx.envoyAlive();
  const refused = res.status === 400 && !pushed && !envoyGotBad;
  const controlPlane = refused
    ? `refused before push (400): ${reasonOf(error)}`
    : ctx.controlPlaneView(since, `NOT refused (${res.status}) ${error}`);
  await ctx.api.switchFilter(name, false);
  return {
    scenario: "abort-configure", failPolicy: "n/a",
    what: "throws in onConfigure when its configuration is \"bad\" (set through the admin API)",
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => healthy(a)),
    controlPlane,
    recovery: refused
      ? { action: "none needed (refused before push; the good configuration keeps serving)", ms: 0 }
      : { action: "configuration was pushed!", ms: null },
    notes,
  };
}

/**
 * The same fixture whose very first configuration is "bad" (a new filter folder whose filter.json
 * says so): the pre-flight starts it, onConfigure traps, the build is an error and Envoy never
 * hears of the filter. Cleanup: remove the folder.
 */
export async function runAbortAtStart(ctx: ScenarioContext): Promise<ScenarioResult> {
  const name = ctx.freshName("abort-at-start");
  const dir = path.join(ctx.stack.filtersDir, name);
  const notes: string[] = [];
  await ctx.settled(ECDS_TYPE);
  const before = await ecdsState(ctx, name);
  fs.cpSync(repoPath("test", "fixtures", "filters", "abort-configure"), dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: 20, configuration: "bad", failPolicy: "closed" }));
  const f = await waitFor(async () => {
    const f = await ctx.api.filter(name);
    return f?.status === "ok" || f?.status === "error" ? f : undefined;
  }, { what: `${name}'s build to finish`, timeoutMs: ctx.opts.waitMs, details: () => ctx.stack.details() });
  const error = String(f.error ?? "");
  notes.push(`build: ${f.status}${error ? ` ${error.slice(0, 600)}` : ""}`);
  const after = await ecdsState(ctx, name);
  const dump = JSON.stringify(await ctx.stack.envoy.configDump("ecds_filters"));
  const envoyGotIt = after.resource !== undefined || dump.includes(`"${name}"`);
  const resource = after.resource === undefined ? "no resource for it" : `resource ${after.resource}`;
  const version = after.served === before.served ? "unchanged" : "CHANGED";
  notes.push(`ECDS: ${resource}; version ${version}; Envoy's ECDS config names it: ${dump.includes(`"${name}"`) ? "YES" : "no"}`);
  const other = await ctx.traffic.burst(5);
  notes.push(`${name} ran on ${other.filter((a) => a.headers[MARKER] !== undefined).length}/5 requests`);
  notes.push(`an unrelated new filter (listener change) meanwhile: ${await bystanderChange(ctx)}`);
  const alive = await ctx.envoyAlive();
  const refused = f.status === "error" && !envoyGotIt;
  fs.rmSync(dir, { recursive: true, force: true });
  await waitFor(async () => (await ctx.api.filter(name)) === undefined || undefined,
    { what: `${name} removed`, timeoutMs: ctx.opts.waitMs });
  return {
    scenario: "abort-configure at VM start", what: "a new filter whose first configuration is \"bad\" (filter.json)", failPolicy: "n/a",
    envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every((a) => healthy(a)),
    controlPlane: refused
      ? `refused before push (build error in the API): ${reasonOf(error)}`
      : `NOT refused: ${f.status}, pushed: ${envoyGotIt}`,
    recovery: refused ? { action: "none needed (never pushed)", ms: 0 } : { action: "the filter reached Envoy!", ms: null },
    notes,
  };
}
