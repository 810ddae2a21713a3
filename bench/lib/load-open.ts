/**
 * Open-loop load: requests are sent on a fixed schedule (rate), whether or not earlier ones have
 * been answered, so a stall shows up in every request it delays instead of silently lowering the
 * request rate (coordinated omission). node:http with a keep-alive pool; it honours
 * `connection: close` (which Envoy sends while draining a listener), as a real client does.
 *
 * Not autocannon's `overallRate`: that gives each connection a per-second quota, sent back to
 * back at the start of each second, and starts the clock when a request is written; a stalled
 * connection then simply sends nothing, and the stall is one slow sample instead of many.
 *
 * Latency is measured from the moment the request is handed to node:http (which includes waiting
 * for a free socket when all are busy). The scheduler runs on a 1 ms timer; how late each send
 * was against its ideal slot is recorded as `lag` and reported, so the loader's own hiccups are
 * visible rather than mistaken for the proxy's.
 */
import http from "node:http";
import { markerOf, nowMs, SampleLog } from "./samples.ts";
import { summarize, type LatencySummary } from "./stats.ts";

export interface OpenLoopOptions {
  url: string;
  /** Requests per second. */
  rate: number;
  durationMs: number;
  /** Upper bound of open connections (default 256). */
  maxSockets?: number;
  /** A request without a response after this long counts as a socket error (default 10 s). */
  timeoutMs?: number;
  /** Stop early (e.g. Ctrl-C). */
  signal?: AbortSignal;
}

export interface OpenLoopResult {
  log: SampleLog;
  startedAt: number;
  endedAt: number;
  /** Requests scheduled (= rate x duration unless aborted). */
  scheduled: number;
  /** How late sends were against their slots (loader health), ms. */
  lag: LatencySummary;
  /** Connections opened. */
  connections: number;
  /** Responses that said `connection: close` (node:http then opens a new connection). */
  closes: number;
}

export async function openLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 256 });
  let connections = 0;
  let closes = 0;
  const createConnection = agent.createConnection.bind(agent);
  agent.createConnection = (...args: Parameters<typeof createConnection>) => {
    connections++;
    return createConnection(...args);
  };
  const url = new URL(opts.url);
  const log = new SampleLog();
  const lags: number[] = [];
  let total = Math.floor((opts.rate * opts.durationMs) / 1000);
  const interval = 1000 / opts.rate;
  let outstanding = 0;
  let scheduled = 0;
  let resolveDrained: () => void = () => undefined;
  const drained = new Promise<void>((resolve) => (resolveDrained = resolve));

  const send = (slot: number): void => {
    const start = nowMs();
    lags.push(start - slot);
    outstanding++;
    let done = false;
    const finish = (record: () => void): void => {
      if (done) return;
      done = true;
      record();
      if (--outstanding === 0 && scheduled === total) resolveDrained();
    };
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, agent }, (res) => {
      const marker = markerOf((name) => res.headers[name] as string | undefined);
      if (/\bclose\b/i.test(res.headers.connection ?? "")) closes++;
      res.on("data", () => undefined);
      res.on("end", () => finish(() => log.add(start, nowMs() - start, res.statusCode ?? 0, marker)));
      res.on("error", (err: NodeJS.ErrnoException) => finish(() => log.addError(start, nowMs() - start, err.code ?? err.message)));
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => finish(() => log.addError(start, nowMs() - start, err.code ?? err.message)));
    req.end();
  };

  const startedAt = nowMs();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = nowMs();
      while (scheduled < total && startedAt + scheduled * interval <= now) {
        send(startedAt + scheduled * interval);
        scheduled++;
      }
      if (opts.signal?.aborted) total = scheduled;
      if (scheduled >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
  if (outstanding === 0) resolveDrained();
  await drained;
  const endedAt = nowMs();
  agent.destroy();
  return { log, startedAt, endedAt, scheduled: log.count, lag: summarize(lags), connections, closes };
}
