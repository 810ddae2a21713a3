/**
 * Real etcd servers for the replica tests (Debian's etcd-server, installed by `npm run setup`):
 * one member, or a cluster of three, on loopback ports with data under the test's work dir.
 * Members can be killed, stopped and started again with their data.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { freePorts } from "./ports.ts";
import { waitFor } from "./wait.ts";

export const ETCD_BINARY = process.env.ETCD_BIN ?? "/usr/bin/etcd";

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  /** host:port, as CP_STORE lists members. */
  readonly endpoint: string;
  running(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** `etcd://host:port,...` naming every member. */
  readonly storeUrl: string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** Starts `size` members (1 or 3) forming one cluster; resolves once every member serves clients. */
export async function startEtcd(workDir: string, size = 1): Promise<EtcdCluster> {
  if (!fs.existsSync(ETCD_BINARY)) throw new Error(`${ETCD_BINARY} not found: run npm run setup (it installs Debian's etcd-server)`);
  const ports = await freePorts(size * 2);
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `etcd${i}`, client: ports[2 * i]!, peer: ports[2 * i + 1]!,
  }));
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(",");
  const members = specs.map((spec): EtcdMember => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const dataDir = path.join(workDir, `${spec.name}.data`);
    const logPath = path.join(workDir, `${spec.name}.log`);
    const member: EtcdMember = {
      name: spec.name,
      clientUrl: `http://127.0.0.1:${spec.client}`,
      endpoint: `127.0.0.1:${spec.client}`,
      running: () => child !== undefined,
      async start() {
        if (child) return;
        const fd = fs.openSync(logPath, "a");
        // `new` only on first start; a restarted member rejoins with its data dir.
        const state = fs.existsSync(dataDir) ? "existing" : "new";
        const proc = spawn(ETCD_BINARY, [
          "--name", spec.name, "--data-dir", dataDir,
          "--listen-client-urls", `http://127.0.0.1:${spec.client}`, "--advertise-client-urls", `http://127.0.0.1:${spec.client}`,
          "--listen-peer-urls", `http://127.0.0.1:${spec.peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${spec.peer}`,
          "--initial-cluster", initialCluster, "--initial-cluster-state", state, "--initial-cluster-token", "wasm-xds-test",
          // Loopback: fast elections keep fault tests short.
          "--heartbeat-interval", "50", "--election-timeout", "500",
        ], { stdio: ["ignore", fd, fd] });
        fs.closeSync(fd);
        child = proc;
        live.add(proc);
        exited = new Promise((resolve) => proc.once("exit", () => {
          live.delete(proc);
          if (child === proc) child = undefined;
          resolve();
        }));
        await waitFor(async () => {
          if (child !== proc) throw new Error(`etcd ${spec.name} exited at start:\n${fs.readFileSync(logPath, "utf8").slice(-2000)}`);
          return accepts(spec.client);
        }, { timeoutMs: 20_000, what: `etcd ${spec.name} on ${spec.client}` });
      },
      async kill(signal = "SIGKILL") {
        const proc = child;
        if (!proc) return;
        proc.kill(signal);
        await exited;
      },
    };
    return member;
  });
  // Members of a new cluster wait for each other: start them together.
  await Promise.all(members.map((m) => m.start()));
  // Serving means a quorum answers a linearizable read.
  await waitFor(async () => (await health(members[0]!.clientUrl)), { timeoutMs: 20_000, what: "etcd cluster health" });
  return {
    members,
    storeUrl: `etcd://${members.map((m) => m.endpoint).join(",")}`,
    async stop() {
      await Promise.all(members.map((m) => m.kill("SIGKILL")));
    },
  };
}

/** etcd's /health: true when the member serves linearizable requests (it has a leader). */
export async function health(clientUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2000) });
    return res.ok && ((await res.json()) as { health?: string }).health === "true";
  } catch {
    return false;
  }
}
