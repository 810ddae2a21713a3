// Start-up: how long from starting the control plane until a connected Envoy holds every filter.
// 30 filters (copies of add-header with their own root ids and headers), a real Envoy, loopback:
//   (a) cold: an empty state directory -> every filter compiled and ACKed by Envoy (ECDS at the
//       new versions, and every other type);
//   (b) restart with nothing changed (SIGTERM, start again on the same folders) -> same.
// With --baseline <repo copy>, the same runs against that copy (e.g. the unchanged code, unpacked
// with `git archive HEAD | tar -x -C /tmp/base` plus links to node_modules and .tools) in the same
// session, so the two compare on one machine under one load. Not a test: numbers, no thresholds.
//
//   npm run bench:startup [-- --filters 30 --runs 1 --baseline /tmp/base]
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { TEST_XDS_TOKEN } from "../test/support/bootstrap.ts";
import { allocatePorts, type ClientView, type ControlPlanePorts } from "../test/support/controlplane.ts";
import { startEchoUpstream } from "../test/support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../test/support/envoy.ts";
import { httpRequest } from "../test/support/http.ts";
import { makeWorkDir, repoPath } from "../test/support/paths.ts";
import { waitFor } from "../test/support/wait.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../controlplane/node-flags.ts";

const { values } = parseArgs({ options: {
  filters: { type: "string", default: "30" },
  runs: { type: "string", default: "1" },
  baseline: { type: "string" },
} });
const filterCount = Number(values.filters);
const runs = Number(values.runs);

/** Writes `count` copies of add-header (own root id and header names) plus the shared _lib. */
function writeFilters(dir: string, count: number): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(repoPath("filters", "_lib"), path.join(dir, "_lib"), { recursive: true });
  const seed = fs.readFileSync(repoPath("filters", "add-header", "index.ts"), "utf8");
  for (let i = 1; i <= count; i++) {
    const name = `f${String(i).padStart(2, "0")}`;
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, "index.ts"), seed
      .replace('"x-wasm-processed", "yes"', `"x-${name}", "yes"`)
      .replace('"x-wasm-filter", "add-header"', `"x-wasm-filter", "${name}"`)
      .replace(/"add-header"\);\s*$/, `"${name}");\n`));
    fs.writeFileSync(path.join(dir, name, "filter.json"), JSON.stringify({ order: i }));
  }
}

interface Variant { label: string; root: string }

/**
 * Runs `<root>/controlplane/main.ts` as `npm run cp` would, with the environment the test harness
 * gives it (test/support/controlplane.ts starts only this repository's copy, hence this spawn).
 */
function spawnControlPlane(v: Variant, ports: ControlPlanePorts, filtersDir: string, stateDir: string, upstreamPort: number, logPath: string): ChildProcess {
  const fd = fs.openSync(logPath, "a");
  // What `npm run cp` runs in that copy: its launcher when it has one, else main.ts through tsx.
  const launcher = path.join(v.root, "scripts", "run-controlplane.mjs");
  const args = fs.existsSync(launcher) ? [...CONTROLPLANE_NODE_FLAGS, launcher] : ["--import", "tsx", path.join(v.root, "controlplane", "main.ts")];
  const child = spawn(process.execPath, args, {
    cwd: v.root, stdio: ["ignore", fd, fd],
    env: {
      ...process.env, CP_XDS_HOST: "127.0.0.1", CP_XDS_PORT: String(ports.xds), CP_MODULE_HOST: "127.0.0.1", CP_MODULE_PORT: String(ports.modules),
      CP_ADMIN_PORT: String(ports.admin), CP_LISTENER_ADDRESS: "127.0.0.1", CP_LISTENER_PORT: String(ports.listener),
      CP_UPSTREAM: `127.0.0.1:${upstreamPort}`, CP_MODULE_ADDRESS: `127.0.0.1:${ports.modules}`, CP_FILTERS_DIR: filtersDir,
      // The baseline knows only CP_STATE_FILE; the new code keeps modules next to it.
      CP_STATE_FILE: path.join(stateDir, "state.json"), CP_XDS_TOKEN: TEST_XDS_TOKEN, CP_LOG_LEVEL: "info",
    },
  });
  fs.closeSync(fd);
  return child;
}

async function clients(ports: ControlPlanePorts): Promise<ClientView[] | undefined> {
  try {
    const r = await httpRequest(`http://127.0.0.1:${ports.admin}/api/clients`, { timeoutMs: 2000 });
    return r.status === 200 ? (JSON.parse(r.body) as ClientView[]) : undefined;
  } catch {
    return undefined;
  }
}

interface Phase { readyMs: number; servedMs: number; compiled: number; ecdsVersion: string }

/**
 * Starts the control plane and measures: spawn -> "control plane ready" logged, and spawn -> the
 * Envoy ACKed every type it subscribes to at the version last sent (or, when nothing needed
 * sending, at `expected`), ECDS included.
 */
async function phase(v: Variant, ports: ControlPlanePorts, filtersDir: string, stateDir: string, upstreamPort: number, logPath: string,
  expected?: Record<string, string>): Promise<{ phase: Phase; child: ChildProcess; versions: Record<string, string> }> {
  fs.writeFileSync(logPath, "");
  const started = performance.now();
  const child = spawnControlPlane(v, ports, filtersDir, stateDir, upstreamPort, logPath);
  let readyMs = 0;
  const versions = await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${v.label} control plane exited: ${fs.readFileSync(logPath, "utf8").slice(-2000)}`);
    if (readyMs === 0 && fs.readFileSync(logPath, "utf8").includes('"msg":"control plane ready"')) readyMs = performance.now() - started;
    const [c] = (await clients(ports)) ?? [];
    if (!c || !c.types || !Object.values(c.types).some((t) => t.short === "ECDS")) return undefined;
    const types = Object.values(c.types);
    const done = types.every((t) => t.ackedVersion !== null && (expected ? t.ackedVersion === expected[t.short] : t.ackedVersion === t.sentVersion));
    return done ? Object.fromEntries(types.map((t) => [t.short, t.ackedVersion!])) : undefined;
  }, { what: `${v.label}: Envoy to ACK every type`, timeoutMs: 300_000, intervalMs: 20 });
  const servedMs = performance.now() - started;
  if (readyMs === 0) readyMs = servedMs;
  const compiled = fs.readFileSync(logPath, "utf8").split("\n").filter((l) => l.includes('"msg":"filter built"')).length;
  return { child, versions, phase: { readyMs: Math.round(readyMs), servedMs: Math.round(servedMs), compiled, ecdsVersion: versions.ECDS ?? "" } };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

async function measure(v: Variant, run: number): Promise<{ cold: Phase; restart: Phase }> {
  const workDir = makeWorkDir(`bench-startup-${v.label}-${run}`);
  const filtersDir = path.join(workDir, "filters");
  const stateDir = path.join(workDir, "state");
  writeFilters(filtersDir, filterCount);
  const ports = await allocatePorts();
  const echo = await startEchoUpstream();
  let envoy: EnvoyProcess | undefined;
  let child: ChildProcess | undefined;
  try {
    // Envoy first: it is connected (retrying) when the control plane comes up, as in production.
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, workDir, concurrency: 1 });
    const cold = await phase(v, ports, filtersDir, stateDir, echo.port, path.join(workDir, "cold.log"));
    child = cold.child;
    await stop(child);
    const restart = await phase(v, ports, filtersDir, stateDir, echo.port, path.join(workDir, "restart.log"), cold.versions);
    child = restart.child;
    return { cold: cold.phase, restart: restart.phase };
  } finally {
    if (child) await stop(child);
    await envoy?.stop();
    await echo.close();
  }
}

const variants: Variant[] = [
  ...(values.baseline ? [{ label: "baseline", root: path.resolve(values.baseline) }] : []),
  { label: "current", root: repoPath() },
];
const startedAt = new Date();
const rows: { variant: string; run: number; cold: Phase; restart: Phase }[] = [];
for (let run = 1; run <= runs; run++) {
  for (const v of variants) {
    let r: Awaited<ReturnType<typeof measure>>;
    try {
      r = await measure(v, run);
    } catch (err) {
      // One stuck run (e.g. an Envoy that never ACKs) is reported, not fatal to the others.
      console.error(`${v.label} run ${run} failed: ${(err as Error).message.slice(0, 300)}`);
      continue;
    }
    rows.push({ variant: v.label, run, ...r });
    console.log(`${v.label} run ${run}: cold ${r.cold.servedMs} ms (ready ${r.cold.readyMs}, compiled ${r.cold.compiled}); ` +
      `restart ${r.restart.servedMs} ms (ready ${r.restart.readyMs}, compiled ${r.restart.compiled})`);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const summary = Object.fromEntries(variants.map((v) => {
  const mine = rows.filter((r) => r.variant === v.label);
  if (mine.length === 0) return [v.label, { coldServedMs: NaN, restartServedMs: NaN }];
  return [v.label, { coldServedMs: median(mine.map((r) => r.cold.servedMs)), restartServedMs: median(mine.map((r) => r.restart.servedMs)) }];
}));
const info = {
  startedAt: startedAt.toISOString(), filters: filterCount, runs, cores: os.availableParallelism(), loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  envoyConcurrency: 1, baseline: values.baseline ?? null,
};
const outDir = repoPath("bench", "results", `${startedAt.toISOString().slice(0, 16).replace(":", "-")}-startup`);
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify({ info, summary, rows }, null, 2) + "\n");
const line = (r: (typeof rows)[number]) =>
  `| ${r.variant} | ${r.run} | ${r.cold.readyMs} | ${r.cold.servedMs} | ${r.cold.compiled} | ${r.restart.readyMs} | ${r.restart.servedMs} | ${r.restart.compiled} |`;
const ratio = summary.baseline && summary.current ? (summary.current.coldServedMs / summary.baseline.coldServedMs).toFixed(2) : undefined;
const report = [
  `# Start-up with ${filterCount} filters (${info.startedAt})`,
  "",
  `${info.cores} cores, load average ${info.loadAverage.join(" ")} at the end; Envoy 1.40 (--concurrency 1) started first and retrying;`,
  "times from spawning the control plane. *ready*: it logged \"control plane ready\" (xDS port open); *served*: the",
  "Envoy ACKed every type it subscribes to (ECDS naming all filters included) at the versions sent, or, after a restart",
  "where nothing needed sending, at the versions it already held. *compiled*: filters compiled (\"filter built\" log lines).",
  "",
  "| variant | run | cold ready ms | cold served ms | compiled | restart ready ms | restart served ms | compiled |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map(line),
  "",
  ...Object.entries(summary).map(([k, s]) => `- ${k}: cold start served in ${s.coldServedMs} ms, restart with nothing changed in ${s.restartServedMs} ms (median of ${runs}).`),
  ...(ratio ? [`- cold start, current / baseline: ${ratio}x.`] : []),
  "",
].join("\n");
fs.writeFileSync(path.join(outDir, "report.md"), report);
console.log(report);
console.log(`written to ${outDir}`);
