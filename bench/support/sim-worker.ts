// A client process of the fan-out benchmark: runs a share of the simulated Envoys (sim-envoy.ts),
// so the clients' event loop is not what the server comparison measures. Started (forked) by
// bench/support/sim-workers.ts; driven over IPC. Reports its event-loop utilisation and CPU time
// over the change window, to show whether it was saturated.
import { performance, type EventLoopUtilization } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { openChannel, SimEnvoy, type Variant } from "./sim-envoy.ts";

export type WorkerCommand =
  | {
    id: number;
    cmd: "open";
    port: number;
    variant: Variant;
    /** Node ids sim-envoy-<variant>-<from> .. <to - 1>. */
    from: number;
    to: number;
    filters: string[];
    perChannel: number;
    batch: number;
    deltaWildcard: "star" | "empty";
    timeoutMs: number;
  }
  /** Start the change window; `key` is the ECDS version (SotW) or name@version (delta) to come. */
  | { id: number; cmd: "mark"; key: string }
  | { id: number; cmd: "await"; key: string; timeoutMs: number }
  | { id: number; cmd: "close" };

export type WorkerReply =
  | { id: number; ok: true; rampMs?: number }
  | { id: number; ok: true; ackedAt: number[]; elu: number; cpuMs: number; windowMs: number }
  | { id: number; ok: false; error: string; unimplemented?: boolean };

let sims: SimEnvoy[] = [];
let channels: grpc.Client[] = [];
interface Usage {
  elu: EventLoopUtilization;
  cpu: NodeJS.CpuUsage;
  at: number;
}
const usageNow = (): Usage => ({
  elu: performance.eventLoopUtilization(),
  cpu: process.cpuUsage(),
  at: performance.timeOrigin + performance.now(),
});
/** The change window: from `mark` to the moment every stream here ACKed `key`. */
let mark: { key: string; start: Usage; end: Promise<Usage> } | undefined;

const reply = (m: WorkerReply): void => {
  process.send!(m);
};

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms);
    }),
  ]);
}

async function open(c: Extract<WorkerCommand, { cmd: "open" }>): Promise<WorkerReply> {
  const started = performance.now();
  for (let i = c.from; i < c.to; i += c.batch) {
    const step: SimEnvoy[] = [];
    for (let j = i; j < Math.min(c.to, i + c.batch); j++) {
      const ch = Math.floor((j - c.from) / c.perChannel);
      if (!channels[ch]) channels[ch] = openChannel(c.port, ch);
      const nodeId = `sim-envoy-${c.variant}-${j}`;
      const sim = new SimEnvoy({ variant: c.variant, nodeId, filters: c.filters, deltaWildcard: c.deltaWildcard });
      sim.start(channels[ch] as Parameters<SimEnvoy["start"]>[0]);
      sims.push(sim);
      step.push(sim);
    }
    try {
      await withTimeout(Promise.all(step.map((s) => s.ready)), c.timeoutMs, () => `streams ${i}..${i + step.length - 1} subscribed`);
    } catch (err) {
      const failed = step.find((s) => s.error);
      const unimplemented = failed?.error?.code === grpc.status.UNIMPLEMENTED;
      const detail = failed?.error ? ` (first stream error: ${failed.error.message})` : "";
      return { id: c.id, ok: false, error: `${err instanceof Error ? err.message : String(err)}${detail}`, unimplemented };
    }
  }
  return { id: c.id, ok: true, rampMs: performance.now() - started };
}

async function awaitAcks(c: Extract<WorkerCommand, { cmd: "await" }>): Promise<WorkerReply> {
  try {
    const all = Promise.all(sims.map((s) => s.ackOf(c.key)));
    // Without a mark for this key (the server's versions were not the expected ones), the window
    // ends when the driver asked, which can only lower the utilisation reported.
    const window = mark?.key === c.key ? mark : { key: c.key, start: mark?.start ?? usageNow(), end: all.then(usageNow) };
    const ackedAt = await withTimeout(all, c.timeoutMs,
      () => `ECDS ${c.key} ACKed by ${sims.filter((s) => s.ecdsAckedAt.has(c.key)).length}/${sims.length} streams`);
    const end = await window.end;
    const errors = sims.filter((s) => s.error);
    if (errors.length > 0) return { id: c.id, ok: false, error: `${errors.length} streams failed, first: ${errors[0]!.error!.message}` };
    const cpuUser = end.cpu.user - window.start.cpu.user;
    const cpuSystem = end.cpu.system - window.start.cpu.system;
    return {
      id: c.id,
      ok: true,
      ackedAt,
      elu: performance.eventLoopUtilization(end.elu, window.start.elu).utilization,
      cpuMs: (cpuUser + cpuSystem) / 1000,
      windowMs: end.at - window.start.at,
    };
  } catch (err) {
    return { id: c.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

function close(id: number): WorkerReply {
  for (const s of sims) s.close();
  for (const ch of channels) ch?.close();
  sims = [];
  channels = [];
  mark = undefined;
  return { id, ok: true };
}

if (process.send) {
  process.on("message", (raw) => {
    const c = raw as WorkerCommand;
    switch (c.cmd) {
      case "open":
        void open(c).then(reply);
        break;
      case "mark": {
        const start = usageNow();
        // ackOf keeps one waiter per stream: the later "await" for this key reuses this one.
        const acks = Promise.all(sims.map((s) => s.ackOf(c.key)));
        mark = { key: c.key, start, end: acks.then(usageNow) };
        mark.end.catch(() => undefined);
        reply({ id: c.id, ok: true });
        break;
      }
        break;
      case "await":
        void awaitAcks(c).then(reply);
        break;
      case "close":
        reply(close(c.id));
        break;
    }
  });
  process.on("disconnect", () => process.exit(0));
}
