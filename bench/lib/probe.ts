/**
 * A trickle of requests on fresh connections (one new TCP connection each, every `intervalMs`)
 * next to the load. The load's kept-alive connections keep a listener's old filter chain until
 * Envoy drains them; a fresh connection always lands on the current one, so the probe tells
 * when a change is live in Envoy, and the load tells when clients with pooled connections see it.
 */
import http from "node:http";
import { markerOf, nowMs, SampleLog } from "./samples.ts";

export interface Probe {
  log: SampleLog;
  stop(): Promise<void>;
}

function once(url: URL, log: SampleLog, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const start = nowMs();
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, agent: false }, (res) => {
      const marker = markerOf((name) => res.headers[name] as string | undefined);
      res.on("data", () => undefined);
      res.on("end", () => {
        log.add(start, nowMs() - start, res.statusCode ?? 0, marker);
        resolve();
      });
      res.on("error", (err: NodeJS.ErrnoException) => {
        log.addError(start, nowMs() - start, err.code ?? err.message);
        resolve();
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => {
      log.addError(start, nowMs() - start, err.code ?? err.message);
      resolve();
    });
    req.end();
  });
}

export function startProbe(url: string, intervalMs = 50, timeoutMs = 10_000): Probe {
  const log = new SampleLog();
  const target = new URL(url);
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const next = nowMs() + intervalMs;
      await once(target, log, timeoutMs);
      await new Promise((r) => setTimeout(r, Math.max(0, next - nowMs())));
    }
  })();
  return {
    log,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
