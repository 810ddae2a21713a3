// Pre-flight of a module: start it as Envoy would (WASI init, root context with the requested
// root id, onStart, onConfigure with the configuration Envoy would hand it), and optionally run
// the filter's filter.test.json cases, before it is pushed. A module that does not create that
// root context, traps or refuses its configuration would otherwise be pushed and make Envoy fail
// every request through the listener. Who calls it and when: preflight-gate.ts, and the upload route.
//
// It runs in a worker thread with a deadline: Wasm start code may loop forever, and the admin API
// and the xDS streams (same event loop) must not hang on it. One long-lived worker, one job at a
// time, FIFO: a job costs milliseconds once the worker is up; a worker that misses a deadline, dies
// or runs out of heap is discarded and the next job gets a fresh one; an idle one goes after five
// minutes (as the compile workers do). It never holds the process open.

import { Worker } from "node:worker_threads";
import type { PreflightJob, PreflightMessage, PreflightRequest } from "./preflight-worker.ts";
import type { TestCase } from "./preflight-cases.ts";

export type PreflightResult = { ok: true; unsupported: string[] } | { ok: false; error: string };

export interface PreflightOptions {
  rootId: string;
  /** Plugin configuration handed to onConfigure ("" when the filter has none). */
  configuration?: string;
  /** filter.test.json cases to run after the start (cases without one use `defaultConfiguration`). */
  cases?: { defaultConfiguration: string; list: TestCase[] };
  /** How long the module's own code (start, and the cases) may run. */
  timeoutMs?: number;
  /** How long loading the worker (tsx, the host) may take before the module runs. */
  bootTimeoutMs?: number;
}

export const PREFLIGHT_TIMEOUT_MS = 5000;
const BOOT_TIMEOUT_MS = 30_000;
/** An idle worker holds a V8 isolate and tsx (tens of MB); restarting one costs 200-400 ms on the next job. */
const IDLE_SHUTDOWN_MS = 5 * 60_000;

interface Job {
  job: PreflightJob;
  timeoutMs: number;
  bootTimeoutMs: number;
  resolve(result: PreflightResult): void;
}

/** Runs the module's start (and cases) in the pre-flight worker; never throws. */
export function preflightModule(wasm: Uint8Array, opts: PreflightOptions): Promise<PreflightResult> {
  const job: PreflightJob = { wasm, rootId: opts.rootId, configuration: opts.configuration ?? "" };
  if (opts.cases && opts.cases.list.length > 0) job.cases = opts.cases;
  return new Promise((resolve) => thread.run({
    job, timeoutMs: opts.timeoutMs ?? PREFLIGHT_TIMEOUT_MS, bootTimeoutMs: opts.bootTimeoutMs ?? BOOT_TIMEOUT_MS, resolve,
  }));
}

/**
 * Starts the worker ahead of the first job (e.g. while the first filters compile), so that job does
 * not wait for tsx and the host to load. Does nothing when a worker runs.
 */
export function warmPreflight(): void {
  thread.warm();
}

/** Stops the worker now (tests, shutdown); a pre-flight asked for later starts a new one. */
export function closePreflight(): Promise<void> {
  return thread.close();
}

/** One worker, one job at a time, FIFO. */
class PreflightThread {
  private worker: Worker | undefined;
  private ready = false;
  private readonly queue: Job[] = [];
  private current: { id: number; job: Job; timer: NodeJS.Timeout } | undefined;
  private bootTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private nextId = 1;

  warm(): void {
    if (this.worker) return;
    try {
      this.start(BOOT_TIMEOUT_MS);
    } catch {
      // The first job reports why the worker cannot start.
      return;
    }
    this.afterJob();
  }

  run(job: Job): void {
    this.queue.push(job);
    this.pump();
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.discard();
    for (const job of this.queue.splice(0)) job.resolve({ ok: false, error: "the pre-flight worker was stopped" });
    await worker?.terminate();
  }

  private pump(): void {
    if (this.current || this.queue.length === 0) return;
    clearTimeout(this.idleTimer);
    if (!this.worker) {
      try {
        this.start(this.queue[0]!.bootTimeoutMs);
      } catch (err) {
        const error = `cannot start the pre-flight worker: ${err instanceof Error ? err.message : String(err)}`;
        for (const job of this.queue.splice(0)) job.resolve({ ok: false, error });
        return;
      }
    }
    if (!this.ready) return; // dispatched on "ready"
    const job = this.queue.shift()!;
    const id = this.nextId++;
    const what = job.job.cases ? "starting and its filter.test.json cases" : "starting";
    const where = `its start code, onStart or onConfigure${job.job.cases ? ", or in a case" : ""}`;
    const error = `did not finish ${what} within ${job.timeoutMs} ms (a loop in ${where}?)`;
    // A module that loops never yields the worker's thread: terminating it is the only way out.
    const timer = setTimeout(() => this.fail(error), job.timeoutMs);
    this.current = { id, job, timer };
    this.worker!.postMessage({ id, job: job.job } satisfies PreflightRequest);
  }

  private start(bootTimeoutMs: number): void {
    const worker = startWorker();
    this.worker = worker;
    this.ready = false;
    // Boot is bounded separately: loading tsx on a busy machine is not the module's fault.
    this.bootTimer = setTimeout(() => this.fail(`the pre-flight host did not start within ${bootTimeoutMs} ms`), bootTimeoutMs);
    worker.on("message", (m: PreflightMessage) => {
      if (worker !== this.worker) return;
      if (m.type === "ready") {
        clearTimeout(this.bootTimer);
        this.ready = true;
        this.pump();
        return;
      }
      const current = this.current;
      if (!current || current.id !== m.id) return;
      clearTimeout(current.timer);
      this.current = undefined;
      current.job.resolve(m.ok ? { ok: true, unsupported: m.unsupported } : { ok: false, error: m.error });
      this.afterJob();
    });
    worker.on("error", (err) => {
      if (worker === this.worker) this.fail(`the pre-flight worker failed: ${err.message}`);
    });
    worker.on("exit", (code) => {
      if (worker === this.worker) this.fail(`the pre-flight worker exited (code ${code}) without a result`);
    });
    // Idle or busy, the worker never keeps the process alive: a running job's deadline timer does.
    worker.unref();
  }

  /** The running job (or the boot) failed: answer it, drop the worker, go on with a fresh one. */
  private fail(error: string): void {
    const current = this.current;
    const booting = !this.ready ? this.queue.shift() : undefined;
    this.discard();
    current?.job.resolve({ ok: false, error });
    booting?.resolve({ ok: false, error });
    this.pump();
  }

  private discard(): void {
    clearTimeout(this.bootTimer);
    clearTimeout(this.idleTimer);
    if (this.current) clearTimeout(this.current.timer);
    this.current = undefined;
    const worker = this.worker;
    this.worker = undefined;
    this.ready = false;
    void worker?.terminate();
  }

  private afterJob(): void {
    if (this.queue.length > 0) return this.pump();
    this.idleTimer = setTimeout(() => this.discard(), IDLE_SHUTDOWN_MS);
    this.idleTimer.unref();
  }
}

const thread = new PreflightThread();

/** Like the compile worker (compiler.ts): Node 20 workers do not inherit tsx, so register it. */
function startWorker(): Worker {
  const workerUrl = new URL("./preflight-worker.ts", import.meta.url).href;
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const boot = `import { register } from ${JSON.stringify(tsxApi)};\nregister();\nawait import(${JSON.stringify(workerUrl)});\n`;
  // The heap limit bounds what the host's JS side may use; the module's linear memory is Wasm's
  // own (at most 4 GiB for wasm32) and goes with the worker.
  return new Worker(boot, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 256 } });
}
