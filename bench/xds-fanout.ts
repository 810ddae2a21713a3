// xDS fan-out: N simulated Envoys hold ADS streams (real gRPC, loopback), one filter's module
// changes, and we measure how long until every one of them has the new ECDS config and ACKed it,
// plus the control plane's memory per idle stream. The control plane runs in its own process
// (bench/support/fanout-server.ts, --expose-gc) so the clients' memory never shows in its RSS.
//
//   npm run bench:xds [-- --sizes 100,1000,5000 --variants sotw,delta]
//   npm run bench:xds -- --peer go-control-plane [...]   (side by side with go-control-plane: xds-peer.ts)
//
// Options: --streams-per-channel 100 (streams sharing one HTTP/2 connection), --batch 250
// (streams opened per ramp step, each step waits for its streams to be subscribed), --server-log
// silent|info (info = production pino logging into /dev/null), --delta-wildcard empty|star,
// --timeout-s 120 (per phase), --max-minutes 30 (whole run), --out <file>, --server-cpu-prof <dir>
// (a V8 CPU profile of each server process, for attributing the fan-out cost), --label <text>
// (a line for the report's header, e.g. which build of the server was measured).
import { execSync, fork, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { sharedNow, type ChangeReply, type ConvergedReply, type ReadyMessage, type RssReply, type ServerCommand, type ServerMessage } from "./support/fanout-protocol.ts";
import { openChannel, SimEnvoy, type Variant } from "./support/sim-envoy.ts";
import { runPeerBench, wantsPeer } from "./xds-peer.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../controlplane/node-flags.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// --peer: the side-by-side comparison has its own options and clients (worker processes).
if (wantsPeer(process.argv.slice(2))) process.exit(await runPeerBench(process.argv.slice(2)));

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "100,1000,5000" },
    variants: { type: "string", default: "sotw,delta" },
    "streams-per-channel": { type: "string", default: "100" },
    batch: { type: "string", default: "250" },
    "server-log": { type: "string", default: "silent" },
    "delta-wildcard": { type: "string", default: "empty" },
    "timeout-s": { type: "string", default: "120" },
    "max-minutes": { type: "string", default: "30" },
    "server-cpu-prof": { type: "string" },
    label: { type: "string" },
    out: { type: "string", default: path.join(REPO, "bench", "results", "xds-fanout.txt") },
  },
});

const positiveInt = (flag: string, v: string): number => {
  const n = Number(v.replace(/[_,]/g, ""));
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`--${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
};
const sizes = values.sizes.split(/[ ,]+/).filter(Boolean).map((s) => positiveInt("sizes", s));
const variants = values.variants.split(",").map((v) => v.trim()).filter(Boolean) as Variant[];
for (const v of variants) {
  if (v !== "sotw" && v !== "delta") {
    console.error(`--variants: unknown variant ${JSON.stringify(v)} (sotw, delta)`);
    process.exit(2);
  }
}
const perChannel = positiveInt("streams-per-channel", values["streams-per-channel"]);
const batchSize = positiveInt("batch", values.batch);
const phaseTimeoutMs = positiveInt("timeout-s", values["timeout-s"]) * 1000;
const serverLog = values["server-log"] === "info" ? "info" : "silent";
const deltaWildcard = values["delta-wildcard"] === "star" ? "star" : "empty";

// The whole run is bounded: a watchdog kills the servers and exits.
const servers = new Set<ChildProcess>();
const watchdog = setTimeout(() => {
  console.error(`xds-fanout: exceeded --max-minutes ${values["max-minutes"]}; aborting`);
  for (const s of servers) s.kill("SIGKILL");
  process.exit(1);
}, positiveInt("max-minutes", values["max-minutes"]) * 60_000);
watchdog.unref();

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

// ---- the server child ---------------------------------------------------------------------

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface ServerHandle {
  ready: ReadyMessage;
  rpc<R extends ServerMessage>(cmd: DistributiveOmit<ServerCommand, "id">): Promise<R>;
  stop(): Promise<void>;
}

async function startServer(): Promise<ServerHandle> {
  const child = fork(path.join(REPO, "bench", "support", "fanout-server.ts"), ["--log", serverLog], {
    cwd: REPO,
    execArgv: ["--expose-gc", ...CONTROLPLANE_NODE_FLAGS, "--import", "tsx", ...(values["server-cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", values["server-cpu-prof"]] : [])],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  servers.add(child);
  let nextId = 1;
  const pending = new Map<number, { resolve: (m: ServerMessage) => void; reject: (e: Error) => void }>();
  let exited: Error | undefined;
  const ready = new Promise<ReadyMessage>((resolve, reject) => {
    child.on("message", (raw) => {
      const m = raw as ServerMessage;
      if ("type" in m && m.type === "ready") return resolve(m);
      if ("id" in m) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.resolve(m);
      }
    });
    child.on("exit", (code, signal) => {
      servers.delete(child);
      exited = new Error(`fanout server exited (code ${code}, signal ${signal})`);
      reject(exited);
      for (const p of pending.values()) p.reject(exited);
      pending.clear();
    });
  });
  const readyMsg = await withTimeout(ready, 60_000, "fanout server start");
  const handle: ServerHandle = {
    ready: readyMsg,
    rpc<R extends ServerMessage>(cmd: DistributiveOmit<ServerCommand, "id">): Promise<R> {
      if (exited) return Promise.reject(exited);
      const id = nextId++;
      return new Promise<R>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (m: ServerMessage) => void, reject });
        child.send({ ...cmd, id });
      });
    },
    async stop() {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      try {
        await withTimeout(handle.rpc({ cmd: "exit" }), 5_000, "server exit");
      } catch {
        /* killed below */
      }
      try {
        await withTimeout(gone, 5_000, "server exit");
      } catch {
        child.kill("SIGKILL");
        await gone;
      }
    },
  };
  return handle;
}

// ---- one measurement ----------------------------------------------------------------------

interface Row {
  variant: Variant;
  n: number;
  status: "ok" | "not implemented" | "failed";
  note?: string;
  rampMs?: number;
  min?: number;
  p50?: number;
  p99?: number;
  max?: number;
  serverConvergedMs?: number;
  serverAcked?: string;
  encodeMs?: number;
  fanoutMs?: number;
  kibPerStream?: number;
  kibPerStreamBeforeChange?: number;
  heapKibPerStream?: number;
  heapKibPerStreamBeforeChange?: number;
  rssBaselineMiB?: number;
  rssConvergedMiB?: number;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const KiB = 1024;
const MiB = 1024 * 1024;

async function measure(variant: Variant, n: number): Promise<Row> {
  const server = await startServer();
  const channels: grpc.Client[] = [];
  const sims: SimEnvoy[] = [];
  const row: Row = { variant, n, status: "failed" };
  try {
    const { ready } = server;
    serverModule = ready.serverModule;
    const before = await server.rpc<RssReply>({ cmd: "rss" });
    row.rssBaselineMiB = before.rss / MiB;

    // Ramp: open `batchSize` streams at a time; each step waits until its streams ACKed ECDS.
    const rampStart = sharedNow();
    for (let i = 0; i < n; i += batchSize) {
      const step: SimEnvoy[] = [];
      for (let j = i; j < Math.min(n, i + batchSize); j++) {
        const ch = Math.floor(j / perChannel);
        if (!channels[ch]) channels[ch] = openChannel(ready.port, ch);
        const sim = new SimEnvoy({ variant, nodeId: `sim-envoy-${variant}-${j}`, filters: ready.filters, deltaWildcard });
        sim.start(channels[ch] as Parameters<SimEnvoy["start"]>[0]);
        sims.push(sim);
        step.push(sim);
      }
      try {
        await withTimeout(Promise.all(step.map((s) => s.ready)), phaseTimeoutMs, `streams ${i}..${i + step.length - 1} subscribed`);
      } catch (err) {
        const unimplemented = step.find((s) => s.error?.code === grpc.status.UNIMPLEMENTED);
        if (unimplemented) {
          row.status = "not implemented";
          row.note = `server not implemented (UNIMPLEMENTED: ${unimplemented.error!.details})`;
          return row;
        }
        throw err;
      }
    }
    row.rampMs = sharedNow() - rampStart;

    // Server-side: every stream registered and ACKed the initial ECDS version.
    const initial = await server.rpc<ConvergedReply>({ cmd: "converged", version: ready.ecdsVersion, expected: n, timeoutMs: phaseTimeoutMs });
    if (!initial.ok) throw new Error(`initial ECDS version not ACKed server-side: ${initial.acked}/${initial.streams} of ${n}`);
    const idle = await server.rpc<RssReply>({ cmd: "rss" });
    row.kibPerStreamBeforeChange = (idle.rss - before.rss) / KiB / n;
    row.heapKibPerStreamBeforeChange = (idle.heapUsed - before.heapUsed) / KiB / n;

    // One filter's module changes: an ECDS-only change.
    const change = await server.rpc<ChangeReply>({ cmd: "change" });
    row.encodeMs = change.encodeMs;
    row.fanoutMs = change.fanoutMs;
    const key = variant === "sotw" ? change.ecdsVersion : `${change.filter}@${change.resourceVersion}`;
    const acks = await withTimeout(Promise.all(sims.map((s) => s.ackOf(key))), phaseTimeoutMs, `every client ACKing ECDS ${key}`)
      .catch((err: Error) => {
        throw new Error(`${err.message} (${sims.filter((s) => s.ecdsAckedAt.has(key)).length}/${n} did)`);
      });
    const latencies = acks.map((at) => at - change.publishedAt).sort((a, b) => a - b);
    row.min = latencies[0]!;
    row.p50 = percentile(latencies, 50);
    row.p99 = percentile(latencies, 99);
    row.max = latencies[latencies.length - 1]!;

    const conv = await server.rpc<ConvergedReply>({ cmd: "converged", version: change.ecdsVersion, expected: n, timeoutMs: 30_000 });
    row.serverAcked = `${conv.acked}/${conv.streams}`;
    if (conv.ok) row.serverConvergedMs = conv.at - change.publishedAt;

    const after = await server.rpc<RssReply>({ cmd: "rss" });
    row.rssConvergedMiB = after.rss / MiB;
    row.kibPerStream = (after.rss - before.rss) / KiB / n;
    row.heapKibPerStream = (after.heapUsed - before.heapUsed) / KiB / n;
    const errors = sims.filter((s) => s.error).length;
    if (errors > 0) row.note = `${errors} streams failed`;
    else if (!conv.ok) row.note = `server registry never showed every stream ACKing ${change.ecdsVersion} (${conv.acked}/${conv.streams})`;
    row.status = "ok";
    return row;
  } catch (err) {
    row.status = "failed";
    row.note = err instanceof Error ? err.message : String(err);
    return row;
  } finally {
    for (const s of sims) s.close();
    for (const c of channels) c?.close();
    await server.stop();
  }
}

// ---- report -------------------------------------------------------------------------------

const fmt = (x: number | undefined, digits = 0): string => (x === undefined ? "-" : x.toFixed(digits));

function table(header: string[], rows: Row[], cells: (r: Row) => string[]): string {
  const widths = header.map((h) => Math.max(h.length, 7));
  widths[0] = 8;
  const line = (cs: string[]): string => cs.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [line(header)];
  for (const r of rows) {
    if (r.status !== "ok") {
      out.push(`${r.variant.padEnd(widths[0]!)}  ${r.n.toLocaleString("en-US").padStart(widths[1]!)}  ${r.variant}: ${r.status === "not implemented" ? r.note : `FAILED: ${r.note}`}`);
      continue;
    }
    out.push(line(cells(r)));
    if (r.note) out.push(`${"".padEnd(widths[0]!)}  note: ${r.note}`);
  }
  return out.join("\n");
}

const mainTable = (rows: Row[]): string => table(
  ["variant", "streams", "p50 ms", "p99 ms", "max ms", "server ms", "KiB/stream"],
  rows,
  (r) => [r.variant, r.n.toLocaleString("en-US"), fmt(r.p50), fmt(r.p99), fmt(r.max), fmt(r.serverConvergedMs), fmt(r.kibPerStream, 1)],
);

const detailTable = (rows: Row[]): string => table(
  ["variant", "streams", "ramp s", "min ms", "encode ms", "fan-out ms", "RSS0 MiB", "RSS MiB", "KiB/str pre", "heap KiB/str", "heap pre"],
  rows.filter((r) => r.status === "ok"),
  (r) => [
    r.variant, r.n.toLocaleString("en-US"), fmt((r.rampMs ?? 0) / 1000, 1), fmt(r.min), fmt(r.encodeMs, 1), fmt(r.fanoutMs),
    fmt(r.rssBaselineMiB, 1), fmt(r.rssConvergedMiB, 1), fmt(r.kibPerStreamBeforeChange, 1), fmt(r.heapKibPerStream, 1), fmt(r.heapKibPerStreamBeforeChange, 1),
  ],
);

/** RSS growth between consecutive sizes / streams added: the per-stream cost without one-off costs. */
function marginal(rows: Row[]): string[] {
  const out: string[] = [];
  for (const v of variants) {
    const ok = rows.filter((r) => r.variant === v && r.status === "ok").sort((a, b) => a.n - b.n);
    for (let i = 1; i < ok.length; i++) {
      const a = ok[i - 1]!;
      const b = ok[i]!;
      const kib = ((b.rssConvergedMiB! - a.rssConvergedMiB!) - (b.rssBaselineMiB! - a.rssBaselineMiB!)) * 1024 / (b.n - a.n);
      out.push(`marginal ${v} ${a.n.toLocaleString("en-US")} -> ${b.n.toLocaleString("en-US")} streams: ${kib.toFixed(1)} KiB RSS per added stream`);
    }
  }
  return out;
}

function targets(rows: Row[]): string[] {
  const out: string[] = [];
  const ok = rows.filter((r) => r.status === "ok");
  for (const r of ok.filter((x) => x.n === 1000)) {
    out.push(`target ${r.variant}: 1,000 streams converged p99 < 1000 ms: ${r.p99! < 1000 ? "met" : "MISSED"} (p99 ${fmt(r.p99)} ms, server-side ${fmt(r.serverConvergedMs)} ms)`);
  }
  for (const r of ok) {
    out.push(`target ${r.variant} @ ${r.n}: < 100 KiB RSS per idle stream: ${r.kibPerStream! < 100 ? "met" : "MISSED"} (${fmt(r.kibPerStream, 1)} KiB)`);
  }
  return out;
}

/** Which code was measured: the commit, and whether controlplane/ differs from it. */
function sourceTree(): string {
  try {
    const head = execSync("git rev-parse --short HEAD", { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execSync("git status --porcelain -- controlplane", { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return `commit ${head}${dirty ? " + uncommitted changes in controlplane/" : ""}`;
  } catch {
    return "not a git checkout";
  }
}

function ulimitN(): string {
  try {
    return execSync("ulimit -n", { shell: "/bin/sh", encoding: "utf8" }).trim();
  } catch {
    return "?";
  }
}

let serverModule = "?";
const started = new Date();
if (perChannel > 128) console.error(`warning: the xDS server allows 128 concurrent streams per connection (grpc.max_concurrent_streams); streams beyond that on one channel wait`);
const loadBefore = os.loadavg();
const maxChannels = Math.ceil(Math.max(...sizes) / perChannel);
const fdLimit = ulimitN();
if (fdLimit !== "unlimited" && Number(fdLimit) < maxChannels * 2 + 256) {
  console.error(`warning: ulimit -n is ${fdLimit}; ${maxChannels} connections need ~${maxChannels * 2 + 256} descriptors in this process (raise it with ulimit -n)`);
}

const rows: Row[] = [];
for (const variant of variants) {
  for (const n of sizes) {
    process.stderr.write(`xds-fanout: ${variant} x ${n} ... `);
    const row = await measure(variant, n);
    rows.push(row);
    process.stderr.write(`${row.status}${row.status === "ok" ? ` p99 ${fmt(row.p99)} ms, ${fmt(row.kibPerStream, 1)} KiB/stream` : `: ${row.note}`}\n`);
    if (row.status === "not implemented") {
      // The remaining sizes would only say the same.
      for (const m of sizes.filter((x) => x !== n)) rows.push({ ...row, n: m });
      break;
    }
  }
}
rows.sort((a, b) => variants.indexOf(a.variant) - variants.indexOf(b.variant) || a.n - b.n);

const loadAfter = os.loadavg();
const report = [
  `xDS fan-out: one ECDS change (a filter's module sha256) to N simulated Envoys over ADS, loopback gRPC`,
  `${started.toISOString()}; node ${process.version}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}); load avg ${loadBefore.map((x) => x.toFixed(2)).join(" ")} before, ${loadAfter.map((x) => x.toFixed(2)).join(" ")} after`,
  `source: ${values.label ? `${values.label}, ` : ""}${sourceTree()}`,
  `clients: ${perChannel} streams per HTTP/2 connection, ramp ${batchSize} streams per step; server: own process, --expose-gc ${CONTROLPLANE_NODE_FLAGS.join(" ")} as npm run cp, logger ${serverLog}; 3 filters; server module controlplane/xds/${serverModule}`,
  ``,
  mainTable(rows),
  ``,
  `p50/p99/max: per client, publish (SnapshotCache.set) -> new ECDS version received and its ACK written.`,
  `server ms: publish -> ClientRegistry shows every stream's ECDS ackedVersion = new version (polled every 2 ms).`,
  `KiB/stream: server RSS after gc() with N streams open and converged on the new version, minus RSS before any stream, / N.`,
  ``,
  ...targets(rows),
  ...marginal(rows),
  ``,
  `details:`,
  detailTable(rows),
  `ramp: opening and subscribing all N streams; min: fastest client; encode: building the changed snapshot;`,
  `fan-out: how long SnapshotCache.set ran synchronously (every stream's watcher renders and writes its response;`,
  `nothing reaches a socket before it returns); RSS0: server before any stream; KiB/str pre: RSS delta per stream`,
  `before the change (converged on the first version); heap: V8 heapUsed delta per stream, after and before the change.`,
].join("\n");
console.log(report);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(values.out, report + "\n");
process.exit(rows.some((r) => r.status === "failed") ? 1 : 0);
