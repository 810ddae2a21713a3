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

// Test hook: a compile whose entry contains this marker kills the worker the way an Emscripten
// abort does (a line on stderr, then exit), so the crash report can be tested end to end.
const CRASH_MARKER = process.env.WASM_XDS_TEST_COMPILER_CRASH;

port.on("message", (request: WorkerRequest) => {
  if (CRASH_MARKER && request.argv[0]?.includes(CRASH_MARKER)) {
    process.stderr.write(`Aborted(simulated compiler crash for ${request.argv[0]})\n`);
    process.exit(7);
  }
  const result = runAsc(request);
  const response: WorkerResponse = { id: request.id, ...result };
  // Hand the bytes over instead of copying them (the buffer is ours: runAsc copied it).
  port.postMessage(response, result.ok ? [result.wasm.buffer as ArrayBuffer] : []);
});
