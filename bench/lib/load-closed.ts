/**
 * Closed-loop load with autocannon: a fixed number of keep-alive connections, each sending its
 * next request as soon as the previous answer arrives (throughput at saturation).
 *
 * autocannon's own latency histogram has 1 ms resolution (a loopback request takes ~0.3-2 ms),
 * so each response's float latency is recorded here instead, from its `response` event; the
 * `headers` event of the same client (pipelining 1) gives the response's marker headers.
 *
 * autocannon 9 (lib/httpClient.js) does not honour `connection: close`: it writes the next
 * request onto the connection the server is closing and counts the reset (ECONNRESET) as an
 * error. RFC 9112 9.6 forbids that, and Envoy says `close` while it drains a listener after a
 * listener change, so each client here is patched to reconnect instead (`honourClose`).
 */
import autocannon from "autocannon";
import { markerOf, nowMs, SampleLog } from "./samples.ts";

export interface ClosedLoopOptions {
  url: string;
  connections: number;
  durationMs: number;
  /** Seconds (autocannon's unit) before a request counts as timed out (default 10). */
  timeoutS?: number;
  signal?: AbortSignal;
}

export interface ClosedLoopResult {
  log: SampleLog;
  startedAt: number;
  endedAt: number;
  /** From autocannon's result. */
  autocannon: { requests: number; non2xx: number; errors: number; timeouts: number; reqPerSecAvg: number };
  /** Responses that said `connection: close` (each followed by a new connection). */
  closes: number;
}

/** http-parser-js's headers-complete info: `headers` is a flat [name, value, name, value, ...]. */
interface ParserHeaders {
  headers?: string[];
}

/** The private parts of autocannon's Client that honourClose() wraps (autocannon 9.0.0). */
interface ClientInternals {
  _doRequest(): void;
  _resetConnection(): void;
}

/**
 * After a response that said `connection: close`, open a new connection for the next request
 * instead of writing it to the closing one (autocannon's _resetConnection drops the old socket
 * with its listeners, connects again and sends from there).
 */
function honourClose(client: object, saidClose: () => boolean, clear: () => void): void {
  const c = client as ClientInternals;
  if (typeof c._doRequest !== "function" || typeof c._resetConnection !== "function") {
    throw new Error("autocannon's Client changed: no _doRequest/_resetConnection to honour connection: close");
  }
  const doRequest = c._doRequest.bind(client);
  c._doRequest = () => {
    if (!saidClose()) return doRequest();
    clear();
    c._resetConnection();
  };
}

function headerGetter(info: ParserHeaders): (name: string) => string | undefined {
  const flat = info.headers ?? [];
  return (name) => {
    for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i]!.toLowerCase() === name) return flat[i + 1];
    return undefined;
  };
}

export function closedLoop(opts: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const log = new SampleLog();
  const lastMarker = new WeakMap<object, string>();
  let closes = 0;
  return new Promise((resolve, reject) => {
    const startedAt = nowMs();
    const instance = autocannon(
      {
        url: opts.url,
        connections: opts.connections,
        pipelining: 1,
        duration: opts.durationMs / 1000,
        timeout: opts.timeoutS ?? 10,
        setupClient: (client) => {
          let close = false;
          client.on("headers", (info) => {
            const get = headerGetter(info as unknown as ParserHeaders);
            lastMarker.set(client, markerOf(get));
            close = /\bclose\b/i.test(get("connection") ?? "");
            if (close) closes++;
          });
          honourClose(client, () => close, () => (close = false));
          // Socket errors, one sample each (autocannon re-connects by itself).
          client.on("connError" as "headers", (err: unknown) => {
            const now = nowMs();
            log.addError(now, 0, (err as NodeJS.ErrnoException).code ?? String(err));
          });
          client.on("timeout" as "headers", () => {
            const now = nowMs();
            log.addError(now - (opts.timeoutS ?? 10) * 1000, (opts.timeoutS ?? 10) * 1000, "TIMEOUT");
          });
        },
      },
      (err, result) => {
        opts.signal?.removeEventListener("abort", stop);
        if (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        resolve({
          log,
          startedAt,
          endedAt: nowMs(),
          autocannon: {
            requests: result.requests.total,
            non2xx: result.non2xx,
            errors: result.errors,
            timeouts: result.timeouts,
            reqPerSecAvg: result.requests.average,
          },
          closes,
        });
      },
    );
    instance.on("response", (client, statusCode, _bytes, responseTime) => {
      const end = nowMs();
      log.add(end - responseTime, responseTime, statusCode, lastMarker.get(client) ?? "");
    });
    const stop = (): void => instance.stop();
    opts.signal?.addEventListener("abort", stop, { once: true });
  });
}
