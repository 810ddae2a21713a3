// The control plane's xDS pieces, alone in a process, for bench/xds-fanout.ts:
//   node --expose-gc --import tsx bench/support/fanout-server.ts [--log silent|info]
// Real SnapshotCache, ClientRegistry, FetchTracker and ADS gRPC server on 127.0.0.1; synthetic
// filters (fake sha256s, nobody fetches modules). Driven over IPC (see fanout-protocol.ts).
// Where a change's time goes (environment; the numbers then include the profiler's cost):
//   FANOUT_PROFILE_DIR=<dir>      a V8 CPU profile per change window (FANOUT_PROFILE_US: interval, 500)
//   FANOUT_PROFILE_KIND=heap      an allocation-sampling profile instead
//   FANOUT_THREAD_CPU=1           per-thread CPU between changes and V8 heap spaces, on stderr
// bench/xds-peer.ts passes BENCH_OURS_NODE_OPTIONS to this process's Node (e.g. --trace-gc).
import fs from "node:fs";
import inspector from "node:inspector";
import v8 from "node:v8";
import { parseArgs } from "node:util";
import type * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { FetchTracker } from "../../controlplane/registry/fetch-tracker.ts";
import { SnapshotCache } from "../../controlplane/xds/cache.ts";
import { ClientRegistry } from "../../controlplane/xds/client-status.ts";
import { buildResources } from "../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../controlplane/xds/snapshot.ts";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import { CHANGING_FILTER, FILTER_NAMES, resourceInputs } from "./fanout-resources.ts";
import { sharedNow, type ChangeReply, type ConvergedReply, type ReadyMessage, type RssReply, type ServerCommand, type ServerMessage } from "./fanout-protocol.ts";

const { values } = parseArgs({ options: { log: { type: "string", default: "silent" } } });

if (!process.send) {
  console.error("fanout-server is started by bench/xds-fanout.ts over IPC");
  process.exit(2);
}
const reply = (m: ServerMessage): void => {
  process.send!(m);
};

type Log = { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
const noop = (): void => undefined;
// "info" reproduces production logging cost (one line per push per stream) into /dev/null.
const log: Log = values.log === "info"
  ? pino({ level: "info" }, pino.destination({ dest: "/dev/null", sync: false }))
  : { info: noop, warn: noop, error: noop };

let generation = 0;
// Like the product's publisher: unchanged resources keep their encodings (per-Envoy ones too).
const build = (): Snapshot => encodeSnapshot(buildResources(resourceInputs(generation)), cache.get());

interface ServerOptions {
  cache: SnapshotCache;
  clients: ClientRegistry;
  fetches: FetchTracker;
  log: Log;
}
type Create = (opts: ServerOptions) => grpc.Server;
type Listen = (server: grpc.Server, host: string, port: number) => Promise<number>;

/**
 * The xDS server factory: createXdsServer/listenXds (xds-server.ts, every discovery service) where
 * it exists, else createAdsServer/listenAds (ads-server.ts, the original ADS-only server).
 */
async function serverFactory(): Promise<{ create: Create; listen: Listen; module: string }> {
  const dir = new URL("../../controlplane/xds/", import.meta.url);
  const xds = new URL("xds-server.ts", dir);
  if (fs.existsSync(xds)) {
    const m = (await import(xds.href)) as { createXdsServer: Create; listenXds: Listen };
    return { create: m.createXdsServer, listen: m.listenXds, module: "xds-server.ts" };
  }
  const m = (await import(new URL("ads-server.ts", dir).href)) as { createAdsServer: Create; listenAds: Listen };
  return { create: m.createAdsServer, listen: m.listenAds, module: "ads-server.ts" };
}

const cache = new SnapshotCache();
const clients = new ClientRegistry();
const fetches = new FetchTracker();
cache.set(build());
const factory = await serverFactory();
const server = factory.create({ cache, clients, fetches, log });
const port = await factory.listen(server, "127.0.0.1", 0);

const gc = (globalThis as { gc?: () => void }).gc;
const ecdsOf = (s: Snapshot | undefined) => s?.types.get(EXTENSION_CONFIG);

function memory(id: number): RssReply {
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  if (process.env.FANOUT_THREAD_CPU === "1") {
    const hs = v8.getHeapSpaceStatistics().map((x) => `${x.space_name}=${(x.space_used_size / 1e6).toFixed(1)}/${(x.physical_space_size / 1e6).toFixed(1)}`);
    process.stderr.write(`memory MB: rss ${(m.rss / 1e6).toFixed(1)} heapUsed ${(m.heapUsed / 1e6).toFixed(1)} heapTotal ${(m.heapTotal / 1e6).toFixed(1)} external ${(m.external / 1e6).toFixed(1)} ${hs.join(" ")}\n`);
  }
  return { id, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, gcAvailable: !!gc, streams: clients.list().length };
}

// FANOUT_PROFILE_DIR: a CPU profile per change window (from its publish to the next command),
// so a profile shows the fan-out alone, not start-up and stream set-up.
const profileDir = process.env.FANOUT_PROFILE_DIR;
const profiler = profileDir ? new inspector.Session() : undefined;
let profiling = 0;
profiler?.connect();
const post = (method: string, params?: object): Promise<unknown> =>
  new Promise((resolve, reject) => profiler!.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
async function stopProfile(): Promise<void> {
  if (!profiler || profiling === 0) return;
  const heap = process.env.FANOUT_PROFILE_KIND === "heap";
  const { profile } = (await post(heap ? "HeapProfiler.stopSampling" : "Profiler.stop")) as { profile: object };
  fs.mkdirSync(profileDir!, { recursive: true });
  const ext = heap ? "heapprofile" : "cpuprofile";
  fs.writeFileSync(`${profileDir}/change-${profiling}-${process.pid}.${ext}`, JSON.stringify(profile));
  profiling = 0;
}
async function startProfile(): Promise<void> {
  if (!profiler) return;
  await stopProfile();
  if (process.env.FANOUT_PROFILE_KIND === "heap") {
    // Allocation sampling (FANOUT_PROFILE_KIND=heap): every object kept or not, 1 sample per 4 KiB.
    await post("HeapProfiler.enable");
    await post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  } else {
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: Number(process.env.FANOUT_PROFILE_US ?? 500) });
    await post("Profiler.start");
  }
  profiling = generation + 1;
}

// FANOUT_THREAD_CPU=1: per-thread CPU (ms) between change commands on stderr: which thread pays.
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of fs.readdirSync("/proc/self/task")) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(`${tid}:${name}`, ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {
      // the thread ended
    }
  }
  return out;
}
let lastThreadCpu: Map<string, number> | undefined;
let lastProcessCpu = process.cpuUsage();
function reportThreadCpu(): void {
  if (process.env.FANOUT_THREAD_CPU !== "1") return;
  const now = threadCpu();
  const pc = process.cpuUsage(lastProcessCpu);
  lastProcessCpu = process.cpuUsage();
  process.stderr.write(`process cpu ms: ${Math.round((pc.user + pc.system) / 1000)}\n`);
  if (lastThreadCpu) {
    const parts = [...now].map(([k, v]) => [k, v - (lastThreadCpu!.get(k) ?? 0)] as const).filter(([, d]) => d > 0);
    process.stderr.write(`thread cpu ms since last change: ${parts.map(([k, d]) => `${k}=${d}`).join(" ")}\n`);
  }
  lastThreadCpu = now;
}

function change(id: number): ChangeReply {
  reportThreadCpu();
  generation++;
  const t0 = sharedNow();
  const snapshot = build();
  const publishedAt = sharedNow();
  const changedTypes = cache.set(snapshot);
  const fanoutMs = sharedNow() - publishedAt;
  const ecds = ecdsOf(snapshot)!;
  const filter = CHANGING_FILTER;
  return { id, publishedAt, encodeMs: publishedAt - t0, fanoutMs, changedTypes, ecdsVersion: ecds.version, filter, resourceVersion: ecds.resources.get(filter)!.version };
}

function converged(id: number, version: string, expected: number, timeoutMs: number): void {
  const deadline = sharedNow() + timeoutMs;
  const check = (): void => {
    const list = clients.list();
    let acked = 0;
    for (const c of list) if (c.types.get(EXTENSION_CONFIG)?.ackedVersion === version) acked++;
    const at = sharedNow();
    if (list.length >= expected && acked === list.length) return reply({ id, ok: true, at, streams: list.length, acked } satisfies ConvergedReply);
    if (at > deadline) return reply({ id, ok: false, at, streams: list.length, acked } satisfies ConvergedReply);
    setTimeout(check, 2);
  };
  check();
}

process.on("message", (raw) => {
  const m = raw as ServerCommand;
  switch (m.cmd) {
    case "rss":
      reportThreadCpu();
      void stopProfile();
      reply(memory(m.id));
      break;
    case "change":
      void startProfile().then(() => reply(change(m.id)));
      break;
    case "converged":
      converged(m.id, m.version, m.expected, m.timeoutMs);
      break;
    case "exit":
      void stopProfile();
      server.forceShutdown();
      reply({ id: m.id, ok: true });
      setTimeout(() => process.exit(0), 50);
      break;
  }
});
process.on("disconnect", () => process.exit(0));

const initial = ecdsOf(cache.get())!;
reply({
  type: "ready",
  port,
  pid: process.pid,
  filters: [...FILTER_NAMES],
  ecdsVersion: initial.version,
  resourceVersions: Object.fromEntries([...initial.resources].map(([n, r]) => [n, r.version])),
  gcAvailable: !!gc,
  serverModule: factory.module,
} satisfies ReadyMessage);
