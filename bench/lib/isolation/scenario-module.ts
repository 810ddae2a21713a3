/**
 * Module-level bad inputs the control plane must refuse before anything reaches Envoy: a prebuilt
 * upload that is not Wasm, one without a proxy_abi_version_* export, one importing a host
 * function Envoy lacks, and a source edit that drops the ABI export. Each goes to a filter that
 * is running (the victim); afterwards its last good module must still be the one served.
 */
import fs from "node:fs";
import path from "node:path";
import { waitFor } from "../../../test/support/wait.ts";
import type { ScenarioContext } from "./context.ts";
import type { Answer } from "./traffic.ts";
import type { ScenarioResult } from "./types.ts";
import { truncated, unknownImport, wrongAbiExport } from "./wasm-bytes.ts";

/** add-header at least twice on the response: the seed and the victim (a copy of it). */
const bothRun = (a: Answer): boolean => a.outcome === 200 && (a.headers["x-wasm-filter"] ?? "").split(",").length >= 2;

interface BadUpload {
  scenario: string;
  what: string;
  make(good: Uint8Array): Uint8Array;
}

const UPLOADS: readonly BadUpload[] = [
  { scenario: "not-valid-wasm", what: "upload: first half of a module (not valid Wasm)", make: truncated },
  { scenario: "wrong-abi-export", what: "upload: valid Wasm without a proxy_abi_version_* export", make: wrongAbiExport },
  { scenario: "unknown-import", what: "upload: imports env.proxy_lag, which Envoy does not provide", make: unknownImport },
];

export async function runModuleRefusals(ctx: ScenarioContext): Promise<ScenarioResult[]> {
  const good = ctx.stack.modules.get("add-header")!;
  const victim = ctx.freshName("victim");
  const up = await ctx.api.upload(victim, good, "add-header");
  if (up.status !== 200) throw new Error(`upload ${victim}: ${up.status} ${JSON.stringify(up.json)}`);
  const sha = String(up.json.sha256);
  await ctx.until(`${victim} running beside add-header`, bothRun);
  const rows: ScenarioResult[] = [];
  for (const bad of UPLOADS) {
    const since = performance.now();
    const res = await ctx.api.upload(victim, bad.make(good), "add-header");
    rows.push(await refusalRow(ctx, bad.scenario, bad.what, victim, sha, since, res.status, String(res.json.error ?? "")));
  }
  rows.push(await sourceEditWithoutAbi(ctx));
  await ctx.api.switchFilter(victim, false);
  return rows;
}

/** The filter still on its last good module, Envoy serving it, nothing NACKed. */
async function refusalRow(ctx: ScenarioContext, scenario: string, what: string, name: string, sha: string, since: number, status: number, error: string): Promise<ScenarioResult> {
  const after = await ctx.api.filter(name);
  const other = await ctx.traffic.burst(3);
  const alive = await ctx.envoyAlive();
  const kept = after?.sha256 === sha;
  return {
    scenario, what, failPolicy: "n/a", envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
    goodFilterUnaffected: other.every(bothRun),
    controlPlane: status >= 400 && status < 500 ? `refused (${status}): ${error.slice(0, 160)}` : `NOT refused (${status}) ${error}`,
    recovery: { action: kept ? "none needed (last good module kept)" : "module changed!", ms: kept ? 0 : null },
    notes: [`module served afterwards: ${kept ? "the last good one" : String(after?.sha256)}`, ...ctx.nacks.since(since).map((n) => `NACK: ${n.message}`)],
  };
}

/** A source edit whose build has no ABI export: a build error in the API, the old module stays. */
async function sourceEditWithoutAbi(ctx: ScenarioContext): Promise<ScenarioResult> {
  const name = ctx.freshName("source-victim");
  const dir = path.join(ctx.stack.filtersDir, name);
  const source = fs.readFileSync(path.join(ctx.stack.filtersDir, "add-header", "index.ts"), "utf8");
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "index.ts"), source);
  const built = await waitFor(async () => {
    const f = await ctx.api.filter(name);
    return f?.status === "ok" && typeof f.sha256 === "string" ? f.sha256 : undefined;
  }, { what: `${name} built`, timeoutMs: ctx.opts.waitMs, details: () => ctx.stack.details() });
  await ctx.until(`${name} running beside add-header`, bothRun);
  const since = performance.now();
  fs.writeFileSync(path.join(dir, "index.ts"), source.replace('export * from "@solo-io/proxy-runtime/proxy";', ""));
  const failed = await waitFor(async () => {
    const f = await ctx.api.filter(name);
    return f?.status === "error" ? f : undefined;
  }, { what: `${name}'s build to fail`, timeoutMs: ctx.opts.waitMs, details: () => ctx.stack.details() });
  const row = await refusalRow(ctx, "no-abi-export-source", "source edit: entry file without the proxy-runtime ABI exports", name, built, since, 400, String(failed.error ?? ""));
  row.controlPlane = `build error in the API: ${String(failed.error ?? "").split("\n")[0]!.slice(0, 160)}`;
  await ctx.api.switchFilter(name, false);
  return row;
}
