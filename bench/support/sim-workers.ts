// The simulated Envoys spread over child processes (sim-worker.ts), for the peer comparison:
// one process's event loop was 73-92% busy taking in 5,000 streams' responses from a fast server,
// so the clients, not the server, would have been measured.
import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Rpc } from "./rpc.ts";
import type { Variant } from "./sim-envoy.ts";
import type { WorkerCommand, WorkerReply } from "./sim-worker.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface OpenOptions {
  port: number;
  variant: Variant;
  n: number;
  filters: string[];
  perChannel: number;
  batch: number;
  deltaWildcard: "star" | "empty";
  timeoutMs: number;
}

export interface ChangeWindow {
  /** Every stream's ACK time (sharedNow clock), all workers together. */
  ackedAt: number[];
  /** Per worker: event-loop utilisation and CPU ms from the mark to its last ACK. */
  perWorker: { elu: number; cpuMs: number; windowMs: number }[];
}

type Ok<R> = Extract<R, { ok: true }>;

interface Worker {
  child: ChildProcess;
  rpc: Rpc<WorkerCommand, WorkerReply>;
}

export class SimWorkers {
  private constructor(private readonly workers: Worker[]) {}

  static async start(count: number): Promise<SimWorkers> {
    const workers: Worker[] = [];
    for (let i = 0; i < count; i++) {
      const child = fork(path.join(HERE, "sim-worker.ts"), [], {
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      });
      const rpc = new Rpc<WorkerCommand, WorkerReply>(`sim worker ${i}`, (c) => child.send(c));
      child.on("message", (m) => rpc.onMessage(m));
      child.on("exit", (code, signal) => rpc.close(new Error(`sim worker ${i} exited (code ${code}, signal ${signal})`)));
      workers.push({ child, rpc });
    }
    return new SimWorkers(workers);
  }

  get count(): number {
    return this.workers.length;
  }

  get pids(): number[] {
    return this.workers.map((w) => w.child.pid ?? -1);
  }

  /** Opens N streams split evenly over the workers (each ramps its share in batches). */
  async open(o: OpenOptions): Promise<{ rampMs: number }> {
    const per = Math.ceil(o.n / this.workers.length);
    const started = performance.now();
    const replies = await Promise.all(this.workers.map((w, i) => {
      const from = Math.min(o.n, i * per);
      const to = Math.min(o.n, from + per);
      const { n: _n, ...rest } = o;
      // The worker's own deadline is per batch; the RPC's covers the whole ramp.
      return w.rpc.call({ cmd: "open", ...rest, from, to }, o.timeoutMs * Math.max(1, Math.ceil(per / o.batch)) + 10_000);
    }));
    const failed = replies.find((r) => !r.ok);
    if (failed && !failed.ok) throw Object.assign(new Error(failed.error), { unimplemented: failed.unimplemented === true });
    return { rampMs: performance.now() - started };
  }

  /** Starts the change window in every worker: utilisation is measured until `key` is ACKed. */
  async mark(key: string): Promise<void> {
    await Promise.all(this.workers.map((w) => w.rpc.call({ cmd: "mark", key }, 10_000)));
  }

  async awaitAcks(key: string, timeoutMs: number): Promise<ChangeWindow> {
    const replies = await Promise.all(this.workers.map((w) => w.rpc.call({ cmd: "await", key, timeoutMs }, timeoutMs + 10_000)));
    const out: ChangeWindow = { ackedAt: [], perWorker: [] };
    for (const r of replies) {
      if (!r.ok) throw new Error(r.error);
      const w = r as Extract<Ok<WorkerReply>, { ackedAt: number[] }>;
      for (const at of w.ackedAt) out.ackedAt.push(at);
      out.perWorker.push({ elu: w.elu, cpuMs: w.cpuMs, windowMs: w.windowMs });
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.rpc.call({ cmd: "close" }, 30_000).catch(() => undefined)));
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.disconnect();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await gone;
      clearTimeout(timer);
    }));
  }
}
