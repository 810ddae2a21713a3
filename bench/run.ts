// What the Wasm sandbox costs, and what a live reload costs, measured against the real Envoy.
//
//   npm run bench                    # full run (~15 min): steady-state rounds + reloads under load
//   npm run bench -- --quick         # < 2 min: every scenario runs and produces numbers
//   npm run bench -- --help
//
// Everything runs on 127.0.0.1 and is started here: an upstream (own process), 10 Envoys side by
// side (8 from static configs, 2 configured by control plane processes over ECDS), 2 control
// planes. Steady state: scenarios interleaved in rounds, closed and open loop. Reloads: the
// product path under load, with the control plane's API polled to split where the time goes.
// Results: bench/results/<date>/ (report.md, results.json, summary.json, SVG charts).
import { execFileSync } from "node:child_process";
import os from "node:os";
import { envoyBinary, makeWorkDir, repoPath } from "../test/support/paths.ts";
import { Cleanup } from "./lib/cleanup.ts";
import { parseOptions, USAGE, type BenchOptions } from "./lib/options.ts";
import { editScenario, listenerScenario, rebuildScenario, toggleScenario } from "./lib/reload-actions.ts";
import { runReload, type ReloadResult } from "./lib/reload-run.ts";
import { benchPlacement, splitEnvoyThreads } from "./lib/reload-variants.ts";
import { writeReport, type Meta } from "./lib/report.ts";
import { startStacks, type Stacks } from "./lib/stacks.ts";
import { runSteady, type SteadyResult } from "./lib/steady.ts";

function environment(opts: BenchOptions, workDir: string): Meta {
  const version = execFileSync(envoyBinary(), ["--version"], { encoding: "utf8" });
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoPath(), encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repoPath(), encoding: "utf8" }).trim();
    if (dirty) commit += " (+ uncommitted changes)";
  } catch {
    // not a git checkout
  }
  return {
    startedAt: new Date().toISOString(),
    finishedAt: "",
    quick: opts.quick,
    envoyVersion: /\/(\d+\.\d+\.\d+)\//.exec(version)?.[1] ?? version.trim(),
    envoyConcurrency: opts.concurrency,
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    node: process.version,
    commit,
    loadavgBefore: os.loadavg(),
    loadavgAfter: [],
    loadavgSamples: [os.loadavg()[0]!],
    options: { o3: opts.o3, rust: opts.rust, buildNice: opts.buildNice, rounds: opts.rounds, closedS: opts.closedS, openS: opts.openS, warmupS: opts.warmupS, connections: opts.connections, rate: opts.rate, reload: opts.reload },
    workDir,
  };
}

async function runReloads(stacks: Stacks, opts: BenchOptions, cleanup: Cleanup, log: (l: string) => void): Promise<ReloadResult[]> {
  const out: ReloadResult[] = [];
  // The placement that disturbed traffic least in `npm run bench:reload` (runs 7-9,
  // docs/build-isolation.md): Envoy's worker alone on the first CPU, its main thread (which fetches
  // and compiles a pushed module) and V8's threads on the build CPUs. Only for the reloads: the
  // steady rows compare Envoys the scheduler places alike. One worker per free CPU only.
  const placement = benchPlacement();
  let stack = stacks.single;
  if (placement !== undefined && opts.concurrency === 1) {
    splitEnvoyThreads(stack.envoy.pid, placement.envoyCpus, placement.buildCpus);
    stack = { ...stack, envoyWorkerCpus: placement.envoyCpus };
    log(`reloads: Envoy's worker on CPU ${placement.envoyCpus}, its other threads on ${placement.buildCpus} with the builds`);
  }
  const all = {
    edit: { scenario: editScenario(stack), plan: opts.reload.edit },
    rebuild: { scenario: rebuildScenario(stack), plan: opts.reload.rebuild },
    toggle: { scenario: toggleScenario(stack), plan: opts.reload.toggle },
    listener: { scenario: listenerScenario(stack), plan: opts.reload.listener },
  };
  const scenarios = opts.reloads.map((name) => all[name as keyof typeof all]);
  for (const { scenario, plan } of scenarios) {
    for (const mode of ["open", "closed"] as const) {
      if (cleanup.abort.signal.aborted) return out;
      log(`reload: ${scenario.title}, ${mode} loop, ${plan.actions} actions every ${plan.intervalMs / 1000} s`);
      const r = await runReload(stack, scenario, {
        ...plan, mode, rate: opts.rate, connections: opts.connections, windowMs: opts.reload.windowMs, signal: cleanup.abort.signal, log,
      });
      log(`  ${r.requests} requests, ${r.non2xx} non-2xx, ${r.socketErrors} socket errors (probe: ${r.probe.requests}, ${r.probe.non2xx + r.probe.socketErrors} failed); ${r.connectionCloses} connection: close; p99 in/out ${r.inside.p99.toFixed(1)}/${r.outside.p99.toFixed(1)} ms`);
      out.push(r);
    }
  }
  return out;
}

async function main(): Promise<number> {
  let opts: BenchOptions;
  try {
    const parsed = parseOptions(process.argv.slice(2));
    if (parsed === "help") {
      console.log(USAGE);
      return 0;
    }
    opts = parsed;
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const cleanup = new Cleanup();
  cleanup.installSignalHandlers();
  const workDir = makeWorkDir("bench");
  const meta = environment(opts, workDir);
  const t0 = Date.now();
  const log = (line: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const sampler = setInterval(() => meta.loadavgSamples.push(os.loadavg()[0]!), 10_000);
  sampler.unref();
  log(`Envoy ${meta.envoyVersion} --concurrency ${opts.concurrency}; ${meta.cores} cores; load avg ${meta.loadavgBefore.map((v) => v.toFixed(2)).join(" ")}; logs in ${workDir}`);
  try {
    const stacks = await startStacks({ workDir, concurrency: opts.concurrency, o3: opts.o3, rust: opts.rust, buildNice: opts.buildNice, cleanup, log });
    let steady: SteadyResult[] = [];
    if (opts.only !== "reload") {
      steady = await runSteady(stacks.targets, {
        rounds: opts.rounds,
        closedMs: opts.closedS * 1000,
        openMs: opts.openS * 1000,
        warmupMs: opts.warmupS * 1000,
        connections: opts.connections,
        rate: opts.rate,
        signal: cleanup.abort.signal,
        log,
      });
    }
    const reload = opts.only !== "steady" ? await runReloads(stacks, opts, cleanup, log) : [];
    if (cleanup.abort.signal.aborted) return 130;
    meta.finishedAt = new Date().toISOString();
    meta.loadavgAfter = os.loadavg();
    const targets = stacks.targets.map(({ id, label, group, filter, via }) => ({ id, label, group, filter, via }));
    console.log(`\n${writeReport(opts.out, { meta, targets, steady, reload })}`);
    return 0;
  } catch (err) {
    if (cleanup.abort.signal.aborted) return 130;
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n(logs kept in ${workDir})`);
    return 1;
  } finally {
    clearInterval(sampler);
    await cleanup.run();
  }
}

process.exit(await main());
