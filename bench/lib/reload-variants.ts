/**
 * Build placements compared under load by `npm run bench:reload`: each variant is its own control
 * plane process and Envoy (--concurrency 1) on one filters folder, all up at once and measured in
 * turn, so variants share the machine's conditions (other sessions' work included):
 *   baseline     compile in the control plane's worker thread (the default), nothing pinned
 *   pinned       Envoy pinned (taskset) to the first CPU, CP_BUILD_CPUS = the others
 *   idle         compile in a SCHED_IDLE process (chrt -i 0), nothing pinned
 *   pinned-idle  both
 *   nice10       CP_BUILD_NICE=10, which now lowers the whole compile process
 *   envoy-pinned Envoy pinned, compile unplaced (is pinning Envoy alone enough?)
 *   build-pinned CP_BUILD_CPUS = all CPUs but the first, Envoy unpinned (the scheduler may move
 *                Envoy's main thread, which compiles a pushed module, off its worker's CPU)
 *   pinned-path  as pinned, and the rest of the request path (this load generator, the upstream)
 *                on Envoy's CPU during its runs: otherwise, with the build taking the other CPU,
 *                the scheduler crowds them onto Envoy's
 *   worker-split Envoy's worker threads on the first CPU; its other threads (the main thread,
 *                which fetches and compiles a pushed module, and V8's compile threads) on the
 *                rest, with the builds: an edit's compile work, ours and Envoy's, stays off the
 *                CPU that serves requests
 *   main-pinned  Envoy's threads but its workers (main, V8's compile threads) with the builds; the
 *                workers on every CPU, so the scheduler can still move them off a busy one
 *   build-pinned-o1  as build-pinned, add-header built at asc -O1 (a smaller module for Envoy's
 *                V8 to compile on each push, for a slower build on the build CPU)
 * Pinning needs >= 2 CPUs; on one CPU the pinned variants are left out (and say so).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { allowedCpus, formatCpuList } from "../../controlplane/compile/placement.ts";
import { writeBootstrap } from "../../test/support/bootstrap.ts";
import { allocatePorts, startControlPlane } from "../../test/support/controlplane.ts";
import { waitFor } from "../../test/support/wait.ts";
import type { Cleanup } from "./cleanup.ts";
import { spawnEnvoy } from "./envoy-process.ts";
import { singleFilterDir } from "./filters.ts";
import type { ProductStack } from "./stacks.ts";

export const VARIANTS = [
  "baseline", "pinned", "idle", "pinned-idle", "nice10", "envoy-pinned", "build-pinned", "pinned-path",
  "worker-split", "main-pinned", "build-pinned-o1",
] as const;
export type VariantName = (typeof VARIANTS)[number];
export const DEFAULT_VARIANTS: VariantName[] = ["baseline", "pinned", "idle", "pinned-idle"];

export interface Variant {
  name: VariantName;
  /** What it does, for the report. */
  description: string;
  /** CP_* (and the internal build placement) variables of its control plane. */
  env: Record<string, string>;
  /** CPUs Envoy is pinned to (taskset -a -p), if any. */
  envoyCpus?: string;
  /** Pin the load generator and the upstream to envoyCpus too, during this variant's runs. */
  pinPath?: boolean;
  /** Envoy's worker threads on envoyCpus, its other threads on these. */
  envoyOtherCpus?: string;
  /** filter.json `build` of the variant's add-header. */
  filterBuild?: Record<string, unknown>;
}

/** Envoy on the first CPU this process may use, builds on the rest; undefined below 2 CPUs. */
export function benchPlacement(): { envoyCpus: string; buildCpus: string; all: string } | undefined {
  const cpus = allowedCpus() ?? [];
  if (cpus.length < 2) return undefined;
  return { envoyCpus: String(cpus[0]), buildCpus: formatCpuList(cpus.slice(1)), all: formatCpuList(cpus) };
}

/** Pins every thread of process `pid` (taskset -a -p: threads started later inherit it). */
export function pinProcess(pid: number, cpus: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}

/** The thread ids of process `pid` whose name (comm) `match` accepts. */
function threadsOf(pid: number, match: (comm: string) => boolean): number[] {
  const dir = `/proc/${pid}/task`;
  return fs.readdirSync(dir).filter((tid) => {
    try {
      return match(fs.readFileSync(path.join(dir, tid, "comm"), "utf8").trim());
    } catch {
      return false; // the thread ended meanwhile
    }
  }).map(Number);
}

/**
 * Envoy's worker threads (named wrk:worker_N) on `workerCpus`, every other thread on `otherCpus`.
 * Threads started later inherit their creator's CPUs: V8's compile threads come from the main
 * thread, so they land on `otherCpus`.
 */
export function splitEnvoyThreads(pid: number, workerCpus: string, otherCpus: string): void {
  pinProcess(pid, otherCpus);
  const workers = threadsOf(pid, (comm) => comm.startsWith("wrk:"));
  if (workers.length === 0) throw new Error(`Envoy ${pid} has no wrk: threads to pin`);
  for (const tid of workers) execFileSync("taskset", ["-p", "-c", workerCpus, String(tid)], { stdio: "ignore" });
}

/**
 * What each variant places: Envoy's threads ("first": the first CPU; "all": every CPU, for its
 * workers when `split`), whether its other threads go to the build CPUs (`split`), the builds
 * confined (`builds`) and how they are scheduled, and the variant's own add-header build settings.
 */
interface VariantSpec {
  envoy?: "first" | "all";
  split?: boolean;
  builds?: boolean;
  idle?: boolean;
  nice?: number;
  pinPath?: boolean;
  filterBuild?: Record<string, unknown>;
}

const SPECS: Record<VariantName, VariantSpec> = {
  baseline: {},
  pinned: { envoy: "first", builds: true },
  idle: { idle: true },
  "pinned-idle": { envoy: "first", builds: true, idle: true },
  nice10: { nice: 10 },
  "envoy-pinned": { envoy: "first" },
  "build-pinned": { builds: true },
  "pinned-path": { envoy: "first", builds: true, pinPath: true },
  "worker-split": { envoy: "first", split: true, builds: true },
  "main-pinned": { envoy: "all", split: true, builds: true },
  "build-pinned-o1": { builds: true, filterBuild: { optimize: "O1" } },
};

/** The variants asked for, on this machine: Envoy on the first CPU we may use, builds on the rest. */
export function variantsFor(names: VariantName[]): { variants: Variant[]; skipped: string[] } {
  const cpus = allowedCpus() ?? [];
  const placement = benchPlacement();
  const envoyCpus = placement?.envoyCpus;
  const buildCpus = placement?.buildCpus;
  const variants: Variant[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    const spec = SPECS[name];
    const pins = spec.envoy !== undefined || spec.builds === true;
    if (pins && placement === undefined) {
      skipped.push(`${name} (needs >= 2 CPUs, this process may use ${formatCpuList(cpus) || "?"})`);
      continue;
    }
    const env: Record<string, string> = {};
    if (spec.idle) env.WASM_XDS_BUILD_SCHED = "idle";
    if (spec.builds) env.CP_BUILD_CPUS = buildCpus!;
    if (spec.nice !== undefined) env.CP_BUILD_NICE = String(spec.nice);
    const description = {
      baseline: "compile in the control plane's worker thread, nothing pinned (the default)",
      pinned: `Envoy on CPU ${envoyCpus}, CP_BUILD_CPUS=${buildCpus} (compile in its own process there)`,
      idle: "compile in its own process under SCHED_IDLE, nothing pinned",
      "pinned-idle": `Envoy on CPU ${envoyCpus}, CP_BUILD_CPUS=${buildCpus}, SCHED_IDLE`,
      nice10: "CP_BUILD_NICE=10: compile in its own process at nice 10, nothing pinned",
      "envoy-pinned": `Envoy on CPU ${envoyCpus}, compile in the worker thread, unpinned`,
      "build-pinned": `CP_BUILD_CPUS=${buildCpus}, Envoy unpinned`,
      "pinned-path": `Envoy, the load generator and the upstream on CPU ${envoyCpus}, CP_BUILD_CPUS=${buildCpus}`,
      "worker-split": `Envoy's worker on CPU ${envoyCpus}; its main and V8 threads with CP_BUILD_CPUS=${buildCpus}`,
      "main-pinned": `Envoy's main and V8 threads with CP_BUILD_CPUS=${buildCpus}; its worker on any CPU`,
      "build-pinned-o1": `CP_BUILD_CPUS=${buildCpus}, Envoy unpinned, add-header built at -O1`,
    }[name];
    variants.push({
      name, description, env,
      ...(spec.envoy !== undefined ? { envoyCpus: spec.envoy === "all" ? placement!.all : envoyCpus! } : {}),
      ...(spec.split ? { envoyOtherCpus: buildCpus! } : {}),
      ...(spec.pinPath ? { pinPath: true } : {}),
      ...(spec.filterBuild ? { filterBuild: spec.filterBuild } : {}),
    });
  }
  return { variants, skipped };
}

/** Control plane + Envoy for one variant, add-header built and served (the reload scenarios' target). */
export async function startVariant(v: Variant, upstreamPort: number, workDir: string, cleanup: Cleanup): Promise<ProductStack> {
  const filtersDir = singleFilterDir(path.join(workDir, `filters-${v.name}`));
  if (v.filterBuild !== undefined) {
    const manifest = path.join(filtersDir, "add-header", "filter.json");
    const current = JSON.parse(fs.readFileSync(manifest, "utf8")) as Record<string, unknown>;
    fs.writeFileSync(manifest, JSON.stringify({ ...current, build: v.filterBuild }, null, 2) + "\n");
  }
  const ports = await allocatePorts();
  const cp = await startControlPlane({
    ports, filtersDir, stateFile: path.join(workDir, `${v.name}-state.json`), upstreamPort, workDir, name: `${v.name}-controlplane`, env: v.env,
  });
  cleanup.add(`${v.name} control plane`, () => cp.kill("SIGTERM"));
  await waitFor(async () => (await cp.filter("add-header"))?.status === "ok", {
    what: `${v.name}: add-header built`, timeoutMs: 120_000, intervalMs: 100, details: () => cp.tail(),
  });
  const nodeId = `bench-${v.name}`;
  const configPath = writeBootstrap(workDir, { xdsPort: ports.xds, nodeId }, `${v.name}-envoy.yaml`);
  const envoy = await spawnEnvoy({ name: `${v.name}-envoy`, configPath, workDir, concurrency: 1 });
  cleanup.add(`${v.name} envoy`, () => envoy.stop());
  // Every thread Envoy has (workers, dispatcher, file flush...); ones started later inherit it.
  if (v.envoyCpus !== undefined && v.envoyOtherCpus !== undefined) splitEnvoyThreads(envoy.pid, v.envoyCpus, v.envoyOtherCpus);
  else if (v.envoyCpus !== undefined) pinProcess(envoy.pid, v.envoyCpus);
  return { cp, ports, envoy, nodeId, filtersDir, url: `http://127.0.0.1:${ports.listener}/headers` };
}
