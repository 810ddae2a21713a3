// Worker-thread entry for compiler.ts: loads asc once, then runs one job per message,
// strictly one at a time (asc is synchronous and keeps module-level state).

import { parentPort } from "node:worker_threads";
import { loadAsc, runAsc, type AscJob } from "./asc-run.ts";

export interface WorkerRequest extends AscJob {
  id: number;
}
export type WorkerResponse = { id: number } & ReturnType<typeof runAsc>;

const port = parentPort;
if (!port) throw new Error("compile-worker.ts must run in a worker thread");

// Messages posted while asc loads stay queued on the port until the listener is attached.
await loadAsc();

port.on("message", (request: WorkerRequest) => {
  const result = runAsc(request);
  const response: WorkerResponse = { id: request.id, ...result };
  // Hand the bytes over instead of copying them (the buffer is ours: runAsc copied it).
  port.postMessage(response, result.ok ? [result.wasm.buffer as ArrayBuffer] : []);
});
