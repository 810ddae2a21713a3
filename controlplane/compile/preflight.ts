// Pre-flight of an uploaded module: start it as Envoy would (WASI init, root context with the
// requested root id, onStart, onConfigure with the filter's configuration) before accepting it.
// A module that does not create that root context, traps or refuses its configuration would
// otherwise be pushed and make Envoy fail every request through the listener.
//
// It runs in a worker thread with a deadline: Wasm start code may loop forever, and the admin
// API (same event loop as the xDS streams) must not hang on it. One pre-flight at a time.

import { Worker } from "node:worker_threads";
import type { PreflightJob, PreflightMessage } from "./preflight-worker.ts";

export type PreflightResult = { ok: true; unsupported: string[] } | { ok: false; error: string };

export interface PreflightOptions {
  rootId: string;
  /** Plugin configuration handed to onConfigure ("" when the filter has none). */
  configuration?: string;
  /** How long the module's own start code may run. */
  timeoutMs?: number;
  /** How long loading the worker (tsx, the host) may take before the module runs. */
  bootTimeoutMs?: number;
}

export const PREFLIGHT_TIMEOUT_MS = 5000;
const BOOT_TIMEOUT_MS = 30_000;

let queue: Promise<unknown> = Promise.resolve();

/** Starts the module in a throw-away worker; never throws. */
export function preflightModule(wasm: Uint8Array, opts: PreflightOptions): Promise<PreflightResult> {
  const run = queue.then(() => runOnce(wasm, opts));
  queue = run.catch(() => undefined);
  return run;
}

function runOnce(wasm: Uint8Array, opts: PreflightOptions): Promise<PreflightResult> {
  const timeoutMs = opts.timeoutMs ?? PREFLIGHT_TIMEOUT_MS;
  const job: PreflightJob = { wasm, rootId: opts.rootId, configuration: opts.configuration ?? "" };
  return new Promise((resolve) => {
    let settled = false;
    let worker: Worker;
    const done = (result: PreflightResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const bootMs = opts.bootTimeoutMs ?? BOOT_TIMEOUT_MS;
    let timer = setTimeout(() => done({ ok: false, error: `the pre-flight host did not start within ${bootMs} ms` }), bootMs);
    try {
      worker = startWorker(job);
    } catch (err) {
      clearTimeout(timer);
      resolve({ ok: false, error: `cannot start the pre-flight worker: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    worker.on("message", (m: PreflightMessage) => {
      if (m.type === "running") {
        clearTimeout(timer);
        const error = `did not finish starting within ${timeoutMs} ms (a loop in its start code, onStart or onConfigure?)`;
        timer = setTimeout(() => done({ ok: false, error }), timeoutMs);
      } else {
        done(m.ok ? { ok: true, unsupported: m.unsupported } : { ok: false, error: m.error });
      }
    });
    worker.on("error", (err) => done({ ok: false, error: `the pre-flight worker failed: ${err.message}` }));
    worker.on("exit", (code) => done({ ok: false, error: `the pre-flight worker exited (code ${code}) without a result` }));
  });
}

/** Like the compile worker (compiler.ts): Node 20 workers do not inherit tsx, so register it. */
function startWorker(job: PreflightJob): Worker {
  const workerUrl = new URL("./preflight-worker.ts", import.meta.url).href;
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const boot = `import { register } from ${JSON.stringify(tsxApi)};\nregister();\nawait import(${JSON.stringify(workerUrl)});\n`;
  // The heap limit bounds what the host's JS side may use; the module's linear memory is Wasm's
  // own (at most 4 GiB for wasm32) and goes with the worker.
  return new Worker(boot, { eval: true, workerData: job, resourceLimits: { maxOldGenerationSizeMb: 256 } });
}
