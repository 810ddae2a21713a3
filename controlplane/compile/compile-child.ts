// Child-process entry for compile-worker.ts when builds are placed (CP_BUILD_CPUS, a nice value,
// SCHED_IDLE; see placement.ts): the same asc as the worker thread runs in-thread otherwise, one
// job per IPC message, strictly one at a time. A process rather than a thread so that the
// placement covers V8's helper threads too (garbage collection, JIT), which do about half of a
// compile's work. The worker thread that started it holds a watchdog that kills it when the
// thread goes (terminated on a timeout, discarded after a crash, or the control plane exits).

import { loadAsc, runAsc } from "./asc-run.ts";
import type { WorkerRequest, WorkerResponse } from "./compile-worker.ts";

const send = process.send?.bind(process);
if (!send) throw new Error("compile-child.ts must run as a child process with an IPC channel");

// Listening at once: a job sent while asc loads waits for it rather than being dropped.
const ready = loadAsc();
process.on("message", (request: WorkerRequest) => {
  void ready.then(() => {
    const response: WorkerResponse = { id: request.id, ...runAsc(request) };
    send(response);
  });
});
// The worker thread went away cleanly: nothing more will come.
process.on("disconnect", () => process.exit(0));
