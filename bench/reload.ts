// What a live edit costs the traffic on the same machine, by where the build runs.
//
//   npm run bench:reload                          # ~16 min: 3 rounds x 4 variants, open loop 500 req/s
//   npm run bench:reload -- --variants baseline,pinned --rounds 5 --modes open,closed
//   npm run bench:reload -- --save-to-live [--edits 10]   # no load: save -> first new response only
//
// One control plane process and one Envoy (--concurrency 1) per build placement variant
// (bench/lib/reload-variants.ts: the default in-thread compile, CP_BUILD_CPUS with Envoy pinned
// to another CPU, SCHED_IDLE, both, ...), all started up front; then rounds in which each variant
// in turn (order rotating) runs the reload scenarios of `npm run bench` under load: edit the
// filter's source every 3 s, the comment-only recompile that pushes nothing, disable/enable every
// 2 s. Report: bench/results/<date>-reload-placement/ (report.md, results.json, window charts).
// Real processes, loopback only.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { allocatePorts, copyFilters, startControlPlane } from "../test/support/controlplane.ts";
import { startEchoUpstream } from "../test/support/echo.ts";
import { startEnvoy } from "../test/support/envoy.ts";
import { httpGet } from "../test/support/http.ts";
import { envoyBinary, makeWorkDir, repoPath } from "../test/support/paths.ts";
import { waitFor } from "../test/support/wait.ts";
import { Cleanup } from "./lib/cleanup.ts";
import { writePlacementReport, type PlacementMeta, type PlacementRun } from "./lib/reload-placement-report.ts";
import { editScenario, rebuildScenario, toggleScenario, type ReloadScenario } from "./lib/reload-actions.ts";
import { runReload } from "./lib/reload-run.ts";
import { benchPlacement, DEFAULT_VARIANTS, pinProcess, startVariant, VARIANTS, variantsFor, type VariantName } from "./lib/reload-variants.ts";
import type { ProductStack } from "./lib/stacks.ts";
import { startUpstream } from "./lib/upstream.ts";

const USAGE = `npm run bench:reload [-- options]
  --variants LIST   build placements to compare (default ${DEFAULT_VARIANTS.join(",")}; also ${VARIANTS.filter((v) => !DEFAULT_VARIANTS.includes(v)).join(", ")})
  --rounds N        rounds, each running every variant (default 3)
  --modes LIST      load: open (fixed rate, default), closed (10 connections), or open,closed
  --rate R          open-loop requests/s (default 500)
  --edits N         edits per run, one every 3 s (default 8); the recompile control does 5 (or fewer)
  --toggles N       disable/enable actions per run, one every 2 s (default 8)
                    (intervals leave a quiet second before each action for the paired ratio)
  --out DIR         results directory (default bench/results/<date>-reload-placement)
  --save-to-live    instead: save -> first new response over --edits edits, no load (bench/results/reload.txt)`;

const { values } = parseArgs({
  options: {
    variants: { type: "string", default: DEFAULT_VARIANTS.join(",") },
    rounds: { type: "string", default: "3" },
    modes: { type: "string", default: "open" },
    rate: { type: "string", default: "500" },
    edits: { type: "string", default: "8" },
    toggles: { type: "string", default: "8" },
    out: { type: "string" },
    "save-to-live": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1) throw new Error(`--${name}: expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function listOf<T extends string>(name: string, v: string, allowed: readonly T[]): T[] {
  const items = v.split(",").map((x) => x.trim()).filter(Boolean);
  for (const x of items) if (!allowed.includes(x as T)) throw new Error(`--${name}: unknown ${JSON.stringify(x)} (${allowed.join(", ")})`);
  if (items.length === 0) throw new Error(`--${name}: empty`);
  return items as T[];
}

function dateStamp(): string {
  return new Date().toISOString().replace(/:\d\d\.\d+Z$/, "").replace(":", "-");
}

function commit(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoPath(), encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repoPath(), encoding: "utf8" }).trim();
    return dirty ? `${head} (+ uncommitted changes)` : head;
  } catch {
    return "unknown";
  }
}

/** Edits and recompiles under load, per build placement (the default mode). */
async function compareVariants(): Promise<number> {
  const names = listOf("variants", values.variants, VARIANTS);
  const modes = listOf("modes", values.modes, ["open", "closed"] as const);
  const rounds = positiveInt("rounds", values.rounds);
  const rate = positiveInt("rate", values.rate);
  const edits = positiveInt("edits", values.edits);
  const toggles = positiveInt("toggles", values.toggles);
  const out = path.resolve(values.out ?? repoPath("bench", "results", `${dateStamp()}-reload-placement`));
  const { variants, skipped } = variantsFor(names);
  if (variants.length === 0) throw new Error(`no variant can run here: ${skipped.join("; ")}`);

  const cleanup = new Cleanup();
  cleanup.installSignalHandlers();
  const workDir = makeWorkDir("bench-reload");
  const t0 = Date.now();
  const log = (line: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const version = execFileSync(envoyBinary(), ["--version"], { encoding: "utf8" });
  const meta: PlacementMeta = {
    startedAt: new Date().toISOString(), finishedAt: "", cores: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "unknown",
    envoyVersion: /\/(\d+\.\d+\.\d+)\//.exec(version)?.[1] ?? version.trim(), commit: commit(), loadavgSamples: [os.loadavg()[0]!],
    rounds, rate, modes, skipped,
  };
  const sampler = setInterval(() => meta.loadavgSamples.push(os.loadavg()[0]!), 10_000);
  sampler.unref();
  const runs: PlacementRun[] = [];
  try {
    log(`variants ${variants.map((v) => v.name).join(", ")}${skipped.length ? ` (left out: ${skipped.join("; ")})` : ""}; logs in ${workDir}`);
    const upstream = await startUpstream(path.join(workDir, "upstream.log"));
    cleanup.add("upstream", () => upstream.stop());
    // One at a time: their start-up builds must not slow each other's.
    const stacks = new Map<string, ProductStack>();
    for (const v of variants) stacks.set(v.name, await startVariant(v, upstream.port, workDir, cleanup));
    log(`${stacks.size} control planes built add-header; their Envoys are LIVE`);
    const scenarios = new Map<string, ReloadScenario[]>();
    for (const [name, stack] of stacks) scenarios.set(name, [editScenario(stack), rebuildScenario(stack), toggleScenario(stack)]);
    const plan = {
      // A quiet second before each action (paired ratio): edits go live in ~1-1.5 s, toggles in < 0.75 s.
      edit: { leadMs: 2000, intervalMs: 3000, actions: edits, tailMs: 3000 },
      rebuild: { leadMs: 2000, intervalMs: 3000, actions: Math.min(edits, 5), tailMs: 3000 },
      toggle: { leadMs: 2000, intervalMs: 2000, actions: toggles, tailMs: 2000 },
    };
    for (let round = 1; round <= rounds; round++) {
      // Rotate the order so no variant always runs first (or right after a busy neighbour).
      const order = variants.map((_, i) => variants[(i + round - 1) % variants.length]!);
      for (const v of order) {
        // pinned-path: the whole request path on Envoy's CPU, for this variant's runs only.
        const all = benchPlacement()?.all;
        const pinPath = v.pinPath === true && v.envoyCpus !== undefined && all !== undefined;
        if (pinPath) for (const pid of [process.pid, upstream.pid]) pinProcess(pid, v.envoyCpus!);
        try {
          for (const scenario of scenarios.get(v.name)!) for (const mode of modes) {
            if (cleanup.abort.signal.aborted) return 130;
            const p = plan[scenario.kind as keyof typeof plan];
            const result = await runReload(stacks.get(v.name)!, scenario, {
              ...p, mode, rate, connections: 10, windowMs: 1000, signal: cleanup.abort.signal, log,
            });
            runs.push({ variant: v.name, round, result });
            log(`round ${round} ${v.name.padEnd(12)} ${scenario.kind.padEnd(7)} ${mode}: p99 in/out ${result.inside.p99.toFixed(1)}/${result.outside.p99.toFixed(1)} ms ` +
              `= ${(result.inside.p99 / result.outside.p99).toFixed(2)}x; ${result.non2xx + result.socketErrors} failed of ${result.requests}`);
          }
        } finally {
          if (pinPath) for (const pid of [process.pid, upstream.pid]) pinProcess(pid, all!);
        }
      }
    }
    meta.finishedAt = new Date().toISOString();
    console.log(`\n${writePlacementReport(out, meta, variants, runs)}\nwritten to ${out}`);
    return 0;
  } catch (err) {
    if (cleanup.abort.signal.aborted) return 130;
    console.error(`bench:reload failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n(logs kept in ${workDir})`);
    return 1;
  } finally {
    clearInterval(sampler);
    await cleanup.run();
  }
}

// ---- --save-to-live: the quiet measure (no load), as before ----

function stampSource(version: string): string {
  const seed = fs.readFileSync(repoPath("filters", "add-header", "index.ts"), "utf8");
  return seed
    .replace(/"x-wasm-processed", "yes"/, `"x-stamp", "${version}"`)
    .replace(/registerRootContext\(([\s\S]*?)"add-header"\)/, 'registerRootContext($1"stamp")');
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function saveToLive(): Promise<number> {
  const edits = positiveInt("edits", values.edits);
  const workDir = makeWorkDir("bench-reload");
  const filtersDir = copyFilters(path.join(workDir, "filters"));
  const ports = await allocatePorts();
  const echo = await startEchoUpstream();
  const cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
  const envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, workDir, concurrency: 1 });
  const url = `http://127.0.0.1:${ports.listener}/headers`;
  const stampOf = async (): Promise<string | undefined> => {
    const r = await httpGet(url);
    return r.status === 200 ? (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-stamp"] : undefined;
  };
  try {
    fs.mkdirSync(path.join(filtersDir, "stamp"));
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource("v0"));
    await waitFor(async () => (await stampOf()) === "v0", { what: "stamp v0 live", timeoutMs: 60_000 });

    const rows: { build: number; push: number; total: number; compile: number }[] = [];
    for (let i = 1; i <= edits; i++) {
      const version = `v${i}`;
      const before = (await cp.filter("stamp"))?.sha256;
      const savedAt = Date.now();
      fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource(version));
      const built = await waitFor(async () => {
        const f = await cp.filter("stamp");
        return f && f.status === "ok" && f.sha256 !== before ? f : undefined;
      }, { what: `build of ${version}`, timeoutMs: 60_000, intervalMs: 5 });
      await waitFor(async () => (await stampOf()) === version, { what: `${version} live`, timeoutMs: 60_000, intervalMs: 2 });
      const liveAt = Date.now();
      const builtAt = Date.parse(built.builtAt!);
      rows.push({ build: builtAt - savedAt, compile: built.buildMs!, push: liveAt - builtAt, total: liveAt - savedAt });
    }
    const clients = await cp.clients();
    const line = (name: string, xs: number[]) => `${name.padEnd(34)} ${String(percentile(xs, 50)).padStart(6)} ${String(percentile(xs, 90)).padStart(6)} ${String(Math.min(...xs)).padStart(6)} ${String(Math.max(...xs)).padStart(6)}`;
    const report = [
      `save-to-live over ${edits} edits (ms; Envoy 1.40.0, --concurrency 1, unoptimised asc build)`,
      `${"".padEnd(34)} ${"p50".padStart(6)} ${"p90".padStart(6)} ${"min".padStart(6)} ${"max".padStart(6)}`,
      line("save -> built (debounce+compile)", rows.map((r) => r.build)),
      line("  of which compile+validate", rows.map((r) => r.compile)),
      line("built -> first new response", rows.map((r) => r.push)),
      line("save -> first new response", rows.map((r) => r.total)),
      `cache-miss re-sends: ${clients[0]?.cacheMissResends ?? 0}; NACKs recorded: ${clients.flatMap((c) => Object.values(c.types)).filter((t) => t.lastNack).length}`,
    ].join("\n");
    console.log(report);
    fs.mkdirSync(repoPath("bench", "results"), { recursive: true });
    fs.writeFileSync(repoPath("bench", "results", "reload.txt"), report + "\n");
    return 0;
  } finally {
    await envoy.stop();
    await cp.kill("SIGTERM");
    await echo.close();
  }
}

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
try {
  process.exit(values["save-to-live"] ? await saveToLive() : await compareVariants());
} catch (err) {
  console.error(`bench:reload: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  process.exit(2);
}
