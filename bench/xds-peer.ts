// bench:xds with a peer: our xDS server and go-control-plane side by side, serving the same
// resources to the same simulated Envoys, in interleaved rounds (ours, go, ours, go, ...).
//
//   npm run bench:xds -- --peer go-control-plane [--sizes 1000,5000 --variants sotw,delta --rounds 3]
//   npm run bench:xds -- --peer go-control-plane --quick     (CI: N=100, one round, 2 changes, both variants)
//
// Per measurement: a fresh server process; N streams opened from --client-workers child processes
// (sim-worker.ts); the server's RSS per idle stream; then one ECDS change (one filter's module),
// timed from the publish to each client's ACK, with the server's CPU from just before the publish
// until it is idle again, and each client worker's event-loop utilisation over that window.
// Results: bench/results/<stamp>-xds-peer/ (report.txt, results.json, resources.json); --quick: tmp/xds-peer-quick/.
// --changes 4: changes per server process (the first is reported apart: it pays the JIT).
// Other options: --streams-per-channel 100, --batch 250, --delta-wildcard empty|star,
// --timeout-s 120 (per phase), --max-minutes 60, --out-dir <dir>, --label <text>,
// --go-snapshot shared|per-node (default shared: one go-control-plane snapshot for every node;
// per-node: one per node, its ECDS rendered per Envoy the way ours does, one SetSnapshot per node).
import { execSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cpuMs } from "./lib/proc.ts";
import { buildGoPeer } from "./support/go-peer-build.ts";
import { ecdsSizes, exportGenerations } from "./support/peer-resources.ts";
import { liveChildren, startGo, startOurs, type BenchServer, type GoSnapshotMode, type ServerKind } from "./support/peer-servers.ts";
import {
  idleIndex, laterView, latencySummary, medianFigures, pairRounds, summarize,
  type ChangeFigures, type Measurement, type RoundPair, type Summary,
} from "./support/peer-stats.ts";
import type { Variant } from "./support/sim-envoy.ts";
import { SimWorkers } from "./support/sim-workers.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const PEERS = ["go-control-plane"] as const;

/** True when the command line asks for a peer comparison (bench/xds-fanout.ts hands over). */
export function wantsPeer(argv: readonly string[]): boolean {
  return argv.some((a) => a === "--peer" || a.startsWith("--peer="));
}

const positiveInt = (flag: string, v: string): number => {
  const n = Number(v.replace(/[_,]/g, ""));
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

class UsageError extends Error {}

interface Options {
  sizes: number[];
  variants: Variant[];
  rounds: number;
  workers: number;
  perChannel: number;
  batch: number;
  deltaWildcard: "star" | "empty";
  timeoutMs: number;
  maxMinutes: number;
  outDir: string;
  label: string | undefined;
  quick: boolean;
  goSnapshot: GoSnapshotMode;
  /** Changes per server process: the first, and K-1 later ones reported apart (--changes). */
  changes: number;
}

function parse(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      peer: { type: "string" },
      quick: { type: "boolean", default: false },
      sizes: { type: "string" },
      variants: { type: "string", default: "sotw,delta" },
      rounds: { type: "string" },
      "client-workers": { type: "string", default: "4" },
      "streams-per-channel": { type: "string", default: "100" },
      batch: { type: "string", default: "250" },
      "delta-wildcard": { type: "string", default: "empty" },
      "timeout-s": { type: "string", default: "120" },
      "max-minutes": { type: "string", default: "60" },
      "out-dir": { type: "string" },
      label: { type: "string" },
      "go-snapshot": { type: "string", default: "shared" },
      changes: { type: "string" },
    },
  });
  const goSnapshot = values["go-snapshot"];
  if (goSnapshot !== "shared" && goSnapshot !== "per-node") {
    throw new UsageError(`--go-snapshot: shared or per-node, got ${JSON.stringify(goSnapshot)}`);
  }
  if (!PEERS.includes(values.peer as (typeof PEERS)[number])) {
    throw new UsageError(`--peer: unknown peer ${JSON.stringify(values.peer ?? "")} (known: ${PEERS.join(", ")})`);
  }
  const variants = values.variants.split(",").map((v) => v.trim()).filter(Boolean);
  for (const v of variants) {
    if (v !== "sotw" && v !== "delta") throw new UsageError(`--variants: unknown variant ${JSON.stringify(v)} (sotw, delta)`);
  }
  const quick = values.quick === true;
  const stamp = new Date().toISOString().slice(0, 16).replace(":", "-");
  return {
    sizes: (values.sizes ?? (quick ? "100" : "1000,5000")).split(/[ ,]+/).filter(Boolean).map((s) => positiveInt("sizes", s)),
    variants: variants as Variant[],
    rounds: positiveInt("rounds", values.rounds ?? (quick ? "1" : "3")),
    workers: positiveInt("client-workers", values["client-workers"]),
    perChannel: positiveInt("streams-per-channel", values["streams-per-channel"]),
    batch: positiveInt("batch", values.batch),
    deltaWildcard: values["delta-wildcard"] === "star" ? "star" : "empty",
    timeoutMs: positiveInt("timeout-s", values["timeout-s"]) * 1000,
    maxMinutes: positiveInt("max-minutes", values["max-minutes"]),
    // A quick run (CI) is a smoke check: its numbers go to the git-ignored tmp/, not bench/results/.
    outDir: values["out-dir"] ?? (quick
      ? path.join(REPO, "tmp", "xds-peer-quick")
      : path.join(REPO, "bench", "results", `${stamp}-xds-peer${goSnapshot === "per-node" ? "-per-node" : ""}`)),
    label: values.label,
    quick,
    goSnapshot,
    changes: positiveInt("changes", values.changes ?? (quick ? "2" : "4")),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until the process is idle (CPU flat for 200 ms); its CPU ms at that point. */
async function idleCpuMs(pid: number, maxMs = 10_000): Promise<number> {
  const readings = [cpuMs(pid)];
  const deadline = performance.now() + maxMs;
  for (;;) {
    await sleep(100);
    readings.push(cpuMs(pid));
    const i = idleIndex(readings);
    if (i >= 0) return readings[i]!;
    if (performance.now() > deadline) return readings[readings.length - 1]!;
  }
}

interface Context {
  opts: Options;
  workers: SimWorkers;
  goBinary: string;
  resourcesFile: string;
  describe: Partial<Record<ServerKind, string>>;
}

async function measure(ctx: Context, server: ServerKind, variant: Variant, n: number, round: number): Promise<Measurement> {
  const m: Measurement = { server, variant, n, round, status: "failed" };
  let s: BenchServer | undefined;
  try {
    if (server === "ours") m.sourceHash = controlplaneFingerprint();
    s = server === "ours" ? await startOurs() : await startGo(ctx.goBinary, ctx.resourcesFile, ctx.opts.goSnapshot);
    ctx.describe[server] = s.describe;
    const rss0 = await s.gcRss();
    const ramp = await ctx.workers.open({
      port: s.port, variant, n, filters: s.filters, perChannel: ctx.opts.perChannel, batch: ctx.opts.batch,
      deltaWildcard: ctx.opts.deltaWildcard, timeoutMs: ctx.opts.timeoutMs,
    });
    m.rampMs = ramp.rampMs;
    // Every stream got its ECDS and ACKed; the server has taken the ACKs in once it is idle.
    await idleCpuMs(s.pid);
    m.kibPerIdleStream = (await s.gcRss() - rss0) / 1024 / n;
    await idleCpuMs(s.pid);

    const later: ChangeFigures[] = [];
    for (let k = 1; k <= ctx.opts.changes; k++) {
      await ctx.workers.mark(s.expectedKey(k)[variant]);
      const cpuBefore = cpuMs(s.pid);
      const change = await s.change();
      if (k === 1) m.fanoutMs = change.fanoutMs;
      const window = await ctx.workers.awaitAcks(change.key[variant], ctx.opts.timeoutMs);
      const cpuAfter = await idleCpuMs(s.pid);
      if (window.ackedAt.length !== n) throw new Error(`change ${k}: ${window.ackedAt.length} of ${n} streams reported an ACK`);
      const figures: ChangeFigures = {
        ...latencySummary(window.ackedAt, change.publishedAt),
        cpuS: (cpuAfter - cpuBefore) / 1000,
        clientElu: window.perWorker.map((w) => w.elu),
        clientCpuMs: window.perWorker.map((w) => w.cpuMs),
        clientCpuShare: window.perWorker.map((w) => (w.windowMs > 0 ? w.cpuMs / w.windowMs : NaN)),
      };
      if (k === 1) Object.assign(m, figures);
      else later.push(figures);
    }
    if (later.length > 0) m.later = { ...medianFigures(later), changes: later.length };
    m.status = "ok";
  } catch (err) {
    m.error = err instanceof Error ? err.message : String(err);
  } finally {
    await ctx.workers.close();
    await s?.stop();
  }
  return m;
}

// ---- report -------------------------------------------------------------------------------

const f = (x: number | undefined, digits = 0): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits));
const times = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}x` : "-");
/** The busiest client worker: "ELU/CPU" in percent. */
const clients = (m: Measurement): string =>
  `${f(Math.max(...(m.clientElu ?? [NaN])) * 100)}/${f(Math.max(...(m.clientCpuShare ?? [NaN])) * 100)}`;
const pct = (xs: readonly number[] | undefined): string => (xs?.length ? xs.map((x) => `${Math.round(x * 100)}`).join("/") : "-");

function grid(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cs: string[]): string => cs.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)];
}

function roundsTable(pairs: readonly RoundPair[], all: readonly Measurement[]): string[] {
  const rows: string[][] = [];
  for (const p of pairs) {
    const side = (m: Measurement): string[] => (m.status === "ok"
      ? [f(m.p50), f(m.p99), f(m.allAcked), f(m.cpuS, 2), f(m.kibPerIdleStream, 1), clients(m)]
      : ["FAILED", "", "", "", "", ""]);
    rows.push([p.variant, `${p.n.toLocaleString("en-US")} #${p.round}`, ...side(p.ours), ...side(p.go),
      f(p.ratios.allAcked, 2), f(p.ratios.p99, 2), f(p.ratios.cpuS, 2), f(p.ratios.kibPerIdleStream, 2)]);
  }
  const out = grid(["variant", "N #round", "ours p50", "p99", "all", "CPU s", "KiB", "client ELU/CPU %",
    "go p50", "p99", "all", "CPU s", "KiB", "client ELU/CPU %", "ratio all", "p99", "CPU", "KiB"], rows);
  for (const m of all.filter((x) => x.status !== "ok")) out.push(`FAILED ${m.server} ${m.variant} N=${m.n} round ${m.round}: ${m.error}`);
  return out;
}

function summaryTable(summaries: readonly Summary[]): string[] {
  return grid(
    ["variant", "N", "rounds", "ours all ms", "go all ms", "ratio all", "ours p99", "go p99", "ratio p99",
      "ours CPU s", "go CPU s", "ratio CPU", "ours KiB", "go KiB", "ratio KiB", "client ELU % ours/go", "client CPU % ours/go"],
    summaries.map((s) => [s.variant, s.n.toLocaleString("en-US"), `${s.rounds}`,
      f(s.ours.allAcked), f(s.go.allAcked), times(s.medianRatio.allAcked),
      f(s.ours.p99), f(s.go.p99), times(s.medianRatio.p99),
      f(s.ours.cpuS, 2), f(s.go.cpuS, 2), times(s.medianRatio.cpuS),
      f(s.ours.kibPerIdleStream, 1), f(s.go.kibPerIdleStream, 1), times(s.medianRatio.kibPerIdleStream),
      `${f(s.maxClientElu.ours * 100)}/${f(s.maxClientElu.go * 100)}`,
      `${f(s.maxClientCpuShare.ours * 100)}/${f(s.maxClientCpuShare.go * 100)}`]),
  );
}

function gitState(): string {
  try {
    // Not trimmed at the start: porcelain lines begin with a status column that may be a space.
    const run = (cmd: string): string => execSync(cmd, { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trimEnd();
    const dirty = run("git status --porcelain -- controlplane").split("\n").filter(Boolean);
    const changes = dirty.length ? `; uncommitted in controlplane/: ${dirty.map((l) => l.slice(3)).join(", ")}` : "; controlplane/ clean";
    return `commit ${run("git rev-parse --short HEAD")}${changes}`;
  } catch {
    return "not a git checkout";
  }
}

/**
 * A hash of every file under controlplane/: each of our measurements records it, since another
 * engineer's edits to the working tree can land between rounds (each round forks a fresh server).
 */
function controlplaneFingerprint(): string {
  const hash = createHash("sha256");
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) hash.update(`${path.relative(REPO, p)}\n`).update(fs.readFileSync(p));
    }
  };
  walk(path.join(REPO, "controlplane"));
  return hash.digest("hex").slice(0, 12);
}

function sourceStates(measurements: readonly Measurement[]): string {
  const ours = measurements.filter((m) => m.server === "ours" && m.sourceHash);
  const states = [...new Set(ours.map((m) => m.sourceHash!))];
  if (states.length <= 1) return `controlplane/ unchanged during the run (${states[0] ?? "?"})`;
  const first = (h: string): string => {
    const m = ours.find((x) => x.sourceHash === h)!;
    return `${h} from ${m.variant} N=${m.n} round ${m.round}`;
  };
  return `controlplane/ CHANGED during the run (edits by others landed between rounds): ${states.map(first).join("; ")}`;
}

// ---- main ---------------------------------------------------------------------------------

/** Runs the comparison; returns the exit code (1 if any measurement failed). */
export async function runPeerBench(args: string[]): Promise<number> {
  let opts: Options;
  try {
    opts = parse(args);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`bench:xds --peer: ${(err as Error).message}`);
      return 2;
    }
    throw err;
  }
  const log = (line: string): void => void process.stderr.write(`xds-peer: ${line}\n`);
  const watchdog = setTimeout(() => {
    log(`exceeded --max-minutes ${opts.maxMinutes}; aborting`);
    for (const c of liveChildren) c.kill("SIGKILL");
    process.exit(1);
  }, opts.maxMinutes * 60_000);
  watchdog.unref();

  const started = new Date();
  const go = buildGoPeer(REPO, log);
  log(go.built ? `built the go-control-plane peer in ${(go.buildMs / 1000).toFixed(1)} s` : "go-control-plane peer: cached build");
  fs.mkdirSync(opts.outDir, { recursive: true });
  const resourcesFile = path.join(opts.outDir, "resources.json");
  fs.writeFileSync(resourcesFile, JSON.stringify(exportGenerations(1 + opts.changes), null, 1));

  const workers = await SimWorkers.start(opts.workers);
  const ctx: Context = { opts, workers, goBinary: go.binary, resourcesFile, describe: {} };
  const loadBefore = os.loadavg();
  const source = gitState();
  const measurements: Measurement[] = [];
  try {
    for (const variant of opts.variants) {
      for (const n of opts.sizes) {
        for (let round = 1; round <= opts.rounds; round++) {
          for (const server of ["ours", "go"] as const) {
            log(`${variant} N=${n} round ${round}/${opts.rounds}: ${server} ...`);
            const m = await measure(ctx, server, variant, n, round);
            measurements.push(m);
            log(m.status === "ok"
              ? `  all ACKed ${f(m.allAcked)} ms (p50 ${f(m.p50)}, p99 ${f(m.p99)}), CPU ${f(m.cpuS, 2)} s, `
                + `${f(m.kibPerIdleStream, 1)} KiB/idle stream, client ELU ${pct(m.clientElu)} %`
              : `  FAILED: ${m.error}`);
          }
        }
      }
    }
  } finally {
    await workers.stop();
  }
  const loadAfter = os.loadavg();

  const pairs = pairRounds(measurements);
  const summaries = summarize(pairs);
  const laterMeasurements = measurements.map(laterView).filter((m): m is Measurement => m !== undefined);
  const laterPairs = pairRounds(laterMeasurements);
  const laterSummaries = summarize(laterPairs);
  const laterSection = opts.changes > 1 ? [
    ``,
    `later changes (changes 2..${opts.changes} of each server process, each figure the median over them), median of ${opts.rounds} round(s):`,
    ...summaryTable(laterSummaries),
    ``,
    `later changes per round:`,
    ...roundsTable(laterPairs, laterMeasurements),
  ] : [];
  const sizes = ecdsSizes("sim-envoy-sotw-1234");
  const report = [
    `xDS fan-out, ours vs go-control-plane: ECDS changes (a filter's module) to N simulated Envoys over ADS, loopback gRPC`,
    `${started.toISOString()}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}); `
      + `load avg ${loadBefore.map((x) => x.toFixed(2)).join(" ")} before, `
      + `${loadAfter.map((x) => x.toFixed(2)).join(" ")} after (a shared machine: the numbers are noisy)`,
    `source: ${opts.label ? `${opts.label}, ` : ""}${source}; measured ${started.toISOString()} to ${new Date().toISOString()}`,
    `        ${sourceStates(measurements)}${gitState() === source ? "" : `; at the end: ${gitState()}`}`,
    `ours: ${ctx.describe.ours ?? "?"}`,
    `go:   ${ctx.describe.go ?? "?"}`,
    `clients: ${opts.workers} worker processes (sim-envoy.ts), ${opts.perChannel} streams per HTTP/2 connection, `
      + `ramp ${opts.batch} per step per worker; delta wildcard ${opts.deltaWildcard}`,
    `interleaved rounds: ours then go, each a fresh server process; ratio = ours / go (above 1: ours slower or bigger)`,
    ``,
    `first change after the server started, median of ${opts.rounds} round(s):`,
    ...summaryTable(summaries),
    ``,
    `first change per round:`,
    ...roundsTable(pairs, measurements),
    ...laterSection,
    ``,
    `p50/p99/all: per client, publish -> the change's ECDS response received and its ACK written (all = the last client).`,
    `Each server process takes ${opts.changes} change(s) one after the other (each once the previous one is ACKed by all and`,
    `  the server is idle); the first after a start also pays for compiling its code path (V8's JIT; Go is compiled ahead).`,
    `CPU s: server process utime+stime (/proc/<pid>/stat) from just before the publish until idle again (200 ms flat),`,
    `  ACK intake included.`,
    `KiB: server RSS after a GC with N converged idle streams minus RSS before any stream, / N`,
    `  (ours: gc() twice; go: debug.FreeOSMemory()).`,
    `client ELU/CPU %: the busiest of the client workers: event-loop utilisation and CPU used / wall time, from just before`,
    `  the publish to its last ACK (summary: the highest over the rounds). ELU near 100 with CPU well below: the worker was`,
    `  runnable but waiting for a core (2 cores shared by server, clients and other people's work), not out of its own loop.`,
    `Same resources: our controlplane/xds code encodes them and the peer serves those bytes (resources.json).`,
    ...(opts.goSnapshot === "shared"
      ? [
        `What differs: our server sends every Envoy its own ECDS copy (node id in the module URL,`,
        `  nack_on_code_cache_miss by delivery state: ${sizes.perEnvoy} bytes for the three filters for one node)`,
        `  where the shared go snapshot serves the canonical copy (${sizes.canonical} bytes); our server also tracks`,
        `  each stream's ACKs (ClientRegistry) and runs the NACK/cache-miss policy; go-control-plane keeps one`,
        `  snapshot for all nodes and no per-node state beyond its watches.`,
      ]
      : [
        `What differs: go renders each node's ECDS copy like ours (node id in the URL; nack_on_code_cache_miss false`,
        `  at first, true for the changed module) and sets one snapshot per node; it does not track ACKs per stream`,
        `  (ClientRegistry) nor run the NACK/cache-miss policy, and its delta resource versions are per-node hashes.`,
      ]),
  ].join("\n");
  console.log(report);
  fs.writeFileSync(path.join(opts.outDir, "report.txt"), `${report}\n`);
  fs.writeFileSync(path.join(opts.outDir, "results.json"), JSON.stringify({
    started: started.toISOString(), source, options: opts, loadBefore, loadAfter, go: { goVersion: go.goVersion }, describe: ctx.describe,
    measurements, summaries, laterSummaries,
  }, null, 1));
  log(`results in ${path.relative(REPO, opts.outDir)}/`);
  return measurements.some((m) => m.status !== "ok") ? 1 : 0;
}
