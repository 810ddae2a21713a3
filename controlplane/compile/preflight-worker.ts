// Worker-thread entry for preflight.ts: starts one plugin in the in-process proxy-wasm host and
// reports how it went. A worker so that a module looping in its start code can be terminated.

import { parentPort, workerData } from "node:worker_threads";
import { startPlugin } from "../cli/wasm-host.ts";

export interface PreflightJob {
  wasm: Uint8Array;
  rootId: string;
  configuration: string;
}

export type PreflightMessage =
  | { type: "running" }
  | { type: "result"; ok: true; unsupported: string[] }
  | { type: "result"; ok: false; error: string };

const port = parentPort;
if (!port) throw new Error("preflight-worker.ts must run in a worker thread");
const job = workerData as PreflightJob;
const send = (m: PreflightMessage) => port.postMessage(m);

// The parent's clock for the module starts now (loading tsx and this file does not count).
send({ type: "running" });
try {
  const outcome = await startPlugin(job.wasm, { rootId: job.rootId, configuration: job.configuration });
  send({ type: "result", ok: true, unsupported: outcome.unsupported });
} catch (err) {
  send({ type: "result", ok: false, error: err instanceof Error ? err.message : String(err) });
}
