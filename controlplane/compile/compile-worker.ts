// Worker-thread entry for compiler.ts: loads asc once, then runs one job per message,
// strictly one at a time (asc is synchronous and keeps module-level state).
//
// When builds are placed (CP_BUILD_CPUS, SCHED_IDLE, or this thread lowered by CP_BUILD_NICE:
// see placement.ts), the jobs run in a child process instead (compile-child.ts) started under
// that placement, and this thread only relays: affinity and priority are per thread on Linux,
// and V8's helper threads, shared by the whole control plane, do about half of a compile's work.

import { spawn, type ChildProcess } from "node:child_process";
import { getPriority } from "node:os";
import { fileURLToPath } from "node:url";
import { parentPort } from "node:worker_threads";
import { loadAsc, runAsc, type AscJob } from "./asc-run.ts";
import { buildPlacement, isDefaultPlacement, placedCommand } from "./placement.ts";

export interface WorkerRequest extends AscJob {
  id: number;
}
export type WorkerResponse = { id: number } & ReturnType<typeof runAsc>;

const port = parentPort;
if (!port) throw new Error("compile-worker.ts must run in a worker thread");

// Test hook: a compile whose entry contains this marker kills the worker the way an Emscripten
// abort does (a line on stderr, then exit), so the crash report can be tested end to end.
const CRASH_MARKER = process.env.WASM_XDS_TEST_COMPILER_CRASH;
const crashTest = (request: WorkerRequest): void => {
  if (CRASH_MARKER && request.argv[0]?.includes(CRASH_MARKER)) {
    process.stderr.write(`Aborted(simulated compiler crash for ${request.argv[0]})\n`);
    process.exit(7);
  }
};

const placement = buildPlacement();
// compiler.ts lowers this thread (setPriority on the thread) before loading this module; a child
// forked from this thread inherits that nice value, so the whole compile runs at it.
const lowered = getPriority() > 0;

if (isDefaultPlacement(placement) && !lowered) {
  // Messages posted while asc loads stay queued on the port until the listener is attached.
  await loadAsc();
  port.on("message", (request: WorkerRequest) => {
    crashTest(request);
    const result = runAsc(request);
    const response: WorkerResponse = { id: request.id, ...result };
    // Hand the bytes over instead of copying them (the buffer is ours: runAsc copied it).
    port.postMessage(response, result.ok ? [result.wasm.buffer as ArrayBuffer] : []);
  });
} else {
  const child = startChild();
  port.on("message", (request: WorkerRequest) => {
    crashTest(request);
    child.send(request);
  });
}

/**
 * Starts compile-child.ts under the placement (taskset -c, chrt -i 0: both exec, so the pid is
 * node's) and relays its answers. Its stderr goes to this thread's, which compiler.ts quotes in
 * a crash report; when it dies, this thread exits with its code, so compiler.ts reports the job
 * as crashed and starts afresh, exactly as for a crash in-thread.
 */
function startChild(): ChildProcess {
  const entry = fileURLToPath(new URL("./compile-child.ts", import.meta.url));
  const { command, args } = placedCommand(process.execPath, ["--import", import.meta.resolve("tsx"), entry], placement);
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe", "ipc"], serialization: "advanced" });
  child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(chunk));
  child.on("message", (response: WorkerResponse) => port?.postMessage(response));
  child.once("error", (err) => {
    process.stderr.write(`cannot start the compile process (${command} ${args.join(" ")}): ${err.message}\n`);
    process.exit(1);
  });
  // "close": its stderr is drained by then, so the crash report quotes its last words.
  child.once("close", (code, signal) => {
    process.stderr.write(`compile process ${child.pid ?? "?"} ended (${signal ?? `exit code ${code}`})\n`);
    process.exit(code || 1);
  });
  if (child.pid !== undefined) watch(child.pid);
  return child;
}

/**
 * Kills the child when this thread goes, however it goes: a shell reading a pipe that only this
 * thread holds. worker.terminate() (a compile timeout) ends this thread without running any of
 * its code, and the child may be deep in a synchronous compile that never reads its IPC channel.
 */
function watch(pid: number): void {
  const dog = spawn("/bin/sh", ["-c", 'read _x; kill -KILL "$1" 2>/dev/null', "compile-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.unref();
}
