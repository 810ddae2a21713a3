// The two servers of the peer comparison behind one interface: ours (bench/support/fanout-server.ts,
// the real controlplane/xds code in its own Node process) and go-control-plane
// (bench/go-control-plane, a Go process serving the resources our code exported).
import { fork, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import type { ChangeReply, ReadyMessage, RssReply, ServerCommand, ServerMessage } from "./fanout-protocol.ts";
import { CHANGING_FILTER } from "./fanout-resources.ts";
import { ourAckKeys } from "./peer-resources.ts";
import { Rpc } from "./rpc.ts";
import type { Variant } from "./sim-envoy.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../../controlplane/node-flags.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 60_000;
const RPC_TIMEOUT_MS = 60_000;

export type ServerKind = "ours" | "go";

export interface ChangeResult {
  /** Wall clock (ms, the clients' sharedNow clock) just before the publish. */
  publishedAt: number;
  /** How long the publish call ran synchronously. */
  fanoutMs: number;
  /** What the clients ACK once they have the change. */
  key: Record<Variant, string>;
}

export interface BenchServer {
  readonly kind: ServerKind;
  readonly pid: number;
  readonly port: number;
  readonly filters: string[];
  /** The ACK key of change k (1 = the first), known before it (so the clients can time their window). */
  expectedKey(k: number): Record<Variant, string>;
  /** One line about the server for the report. */
  readonly describe: string;
  change(): Promise<ChangeResult>;
  /** Garbage-collects (returning freed pages where the runtime can), then reads RSS bytes. */
  gcRss(): Promise<number>;
  stop(): Promise<void>;
}

/** Children still running, for a last-resort kill when the run is aborted. */
export const liveChildren = new Set<ChildProcess>();

function track(child: ChildProcess, what: string, onExit: (err: Error) => void): void {
  liveChildren.add(child);
  child.on("exit", (code, signal) => {
    liveChildren.delete(child);
    onExit(new Error(`${what} exited (code ${code}, signal ${signal})`));
  });
}

async function stopChild(child: ChildProcess, ask: () => Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await ask().catch(() => undefined);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await gone;
  clearTimeout(timer);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Our server: the controlplane/xds SnapshotCache + xDS server, as bench:xds runs it. */
export async function startOurs(): Promise<BenchServer> {
  const child = fork(path.join(HERE, "fanout-server.ts"), ["--log", "silent"], {
    // BENCH_OURS_NODE_OPTIONS: extra Node flags for a profile (e.g. "--cpu-prof --cpu-prof-dir=tmp/prof").
    execArgv: ["--expose-gc", ...CONTROLPLANE_NODE_FLAGS, "--import", "tsx", ...(process.env.BENCH_OURS_NODE_OPTIONS ?? "").split(" ").filter(Boolean)],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const rpc = new Rpc<ServerCommand, Exclude<ServerMessage, ReadyMessage>>("our server", (c) => child.send(c));
  let readyResolve!: (m: ReadyMessage) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<ReadyMessage>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  child.on("message", (m) => {
    if (typeof m === "object" && m !== null && (m as { type?: unknown }).type === "ready") readyResolve(m as ReadyMessage);
    else rpc.onMessage(m);
  });
  track(child, "our server", (err) => {
    readyReject(err);
    rpc.close(err);
  });
  const r = await withTimeout(ready, START_TIMEOUT_MS, "our server start");
  return {
    kind: "ours",
    pid: r.pid,
    port: r.port,
    filters: r.filters,
    expectedKey: (k) => ourAckKeys(k, CHANGING_FILTER),
    describe: `controlplane/xds/${r.serverModule} in Node ${process.version} (own process, --expose-gc ${CONTROLPLANE_NODE_FLAGS.join(" ")} as npm run cp, logger silent)`,
    async change() {
      const c = await rpc.call<ChangeReply>({ cmd: "change" }, RPC_TIMEOUT_MS);
      return { publishedAt: c.publishedAt, fanoutMs: c.fanoutMs, key: { sotw: c.ecdsVersion, delta: `${c.filter}@${c.resourceVersion}` } };
    },
    async gcRss() {
      return (await rpc.call<RssReply>({ cmd: "rss" }, RPC_TIMEOUT_MS)).rss;
    },
    stop: () => stopChild(child, () => rpc.call({ cmd: "exit" }, 5_000)),
  };
}

type GoCommand = { id: number; cmd: "change" | "gc" | "exit" };
interface GoGeneration {
  ecdsVersion: string;
  resourceVersions: Record<string, string>;
}
interface GoReady extends GoGeneration {
  type: "ready";
  port: number;
  pid: number;
  generations: GoGeneration[];
  resources: number;
  identicalBytes: number;
  reordered: string[] | null;
  goVersion: string;
  gomaxprocs: number;
  goControlPlane: string;
  snapshot: GoSnapshotMode;
  samplesIdentical: number;
  /** Same content (proto.Equal; the Wasm config re-encoded in field-number order, false bools omitted). */
  samplesEqual: number;
  samplesTotal: number;
}

/** One snapshot for every node, or one per node with our per-Envoy ECDS rendering. */
export type GoSnapshotMode = "shared" | "per-node";
type GoReply =
  | ({ id: number; publishedAt: number; fanoutMs: number } & GoGeneration)
  | { id: number; rss: number }
  | { id: number; ok: true }
  | { id: number; error: string };

/**
 * Per node, go-control-plane versions a delta resource by its bytes, which then differ per node:
 * the clients wait for the changed filter's second arrival instead (sim-envoy.ts name#k keys).
 */
const goKey = (g: GoGeneration, k: number, mode: GoSnapshotMode): Record<Variant, string> => {
  const v = g.resourceVersions[CHANGING_FILTER];
  if (!v) throw new Error(`go-control-plane peer: no version for ${CHANGING_FILTER}`);
  return { sotw: g.ecdsVersion, delta: mode === "per-node" ? `${CHANGING_FILTER}#${k + 1}` : `${CHANGING_FILTER}@${v}` };
};

/** The go-control-plane peer: `binary --resources <export>` (bench/go-control-plane/main.go). */
export async function startGo(binary: string, resourcesFile: string, mode: GoSnapshotMode): Promise<BenchServer> {
  const child = spawn(binary, ["--resources", resourcesFile, "--snapshot", mode], { stdio: ["pipe", "pipe", "inherit"] });
  const rpc = new Rpc<GoCommand, GoReply>("go-control-plane peer", (c) => child.stdin!.write(`${JSON.stringify(c)}\n`));
  let readyResolve!: (m: GoReady) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<GoReady>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      console.error(`go-control-plane peer: not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if ((m as { type?: unknown }).type === "ready") readyResolve(m as GoReady);
    else rpc.onMessage(m);
  });
  child.stdin!.on("error", () => undefined); // EPIPE after an exit shows as the exit error instead
  track(child, "go-control-plane peer", (err) => {
    readyReject(err);
    rpc.close(err);
  });
  const r = await withTimeout(ready, START_TIMEOUT_MS, "go-control-plane peer start");
  let changes = 0;
  const reordered = r.reordered?.length ? `; re-encoded in another field order: ${r.reordered.join(", ")}` : "";
  return {
    kind: "go",
    pid: r.pid,
    port: r.port,
    filters: Object.keys(r.resourceVersions).sort(),
    expectedKey: (k) => {
      const g = r.generations[k];
      if (!g) throw new Error(`go-control-plane peer: change ${k} needs generation ${k}; ${r.generations.length} exported`);
      return goKey(g, k, mode);
    },
    describe: `go-control-plane ${r.goControlPlane} (${r.goVersion}, GOMAXPROCS ${r.gomaxprocs}), `
      + (r.snapshot === "per-node"
        ? `one snapshot per node with our per-Envoy ECDS rendering `
          + `(of ${r.samplesTotal} ECDS samples of ours, ${r.samplesEqual} same content, ${r.samplesIdentical} same bytes); `
        : "one shared snapshot for every node; ")
      + `${r.identicalBytes}/${r.resources} shared resources byte-identical to ours${reordered}`,
    async change() {
      const c = await rpc.call({ cmd: "change" }, RPC_TIMEOUT_MS);
      if ("error" in c) throw new Error(`go-control-plane peer: ${c.error}`);
      if (!("publishedAt" in c)) throw new Error(`go-control-plane peer: unexpected change reply ${JSON.stringify(c)}`);
      changes++;
      return { publishedAt: c.publishedAt, fanoutMs: c.fanoutMs, key: goKey(c, changes, mode) };
    },
    async gcRss() {
      const c = await rpc.call({ cmd: "gc" }, RPC_TIMEOUT_MS);
      if (!("rss" in c) || c.rss < 0) throw new Error(`go-control-plane peer: no RSS in ${JSON.stringify(c)}`);
      return c.rss;
    },
    stop: () => stopChild(child, () => rpc.call({ cmd: "exit" }, 5_000)),
  };
}
