// Compiles an AssemblyScript filter entry file to a Wasm module, in-process.
//
// asc 0.14 is synchronous (0.3-1 s unoptimised once warm, 3-6 s at -O3) and, when
// loaded, rewires process-wide handlers: asc drops every `uncaughtException` listener and
// binaryen's Emscripten glue installs an `unhandledRejection` handler that aborts. Run on
// the main thread, a compile would stall every xDS stream and the admin API for seconds,
// and the handlers would change how the whole control plane fails. So compiles run in
// long-lived worker threads (still this process, no shell), one job at a time each, as many
// threads as configureCompiler() says; a worker that crashes or hangs is discarded and the
// next job gets a fresh one.

import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import path from "node:path";
import { BINARY_OUT, type AscJobResult } from "./asc-run.ts";
import { ascFlags, type BuildSettings } from "./build-settings.ts";
import type { WorkerRequest, WorkerResponse } from "./compile-worker.ts";

export type CompileOutcome =
  | { ok: true; wasm: Uint8Array; durationMs: number; warnings: string[]; trimmedExports?: string[] }
  | { ok: false; error: string; durationMs: number };

export interface CompileOptions {
  /** -O3 instead of the fast unoptimised build used for live edits (a filter's build.optimize wins). */
  optimize?: boolean;
  /** The filter's filter.json `build` settings (build-settings.ts). */
  build?: BuildSettings;
  /**
   * Directory that diagnostics' file paths are relative to. Default: two levels above the
   * entry's folder, so `<repo>/filters/x/index.ts` reports as `filters/x/index.ts` and
   * relative imports of a sibling `_lib` stay below it.
   */
  baseDir?: string;
  /** Give up (and discard the worker) after this long. */
  timeoutMs?: number;
  /** Files under this folder are read only if they also resolve inside it (no links out). */
  confineDir?: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
/** How much of the worker's stderr a crash report quotes. */
const STDERR_TAIL_CHARS = 2000;
// The worker holds asc and binaryen's heap (about 250 MB RSS); a control plane nobody edits
// filters on should not keep that forever. Restarting costs about 3 s on the next compile.
const IDLE_SHUTDOWN_MS = 5 * 60_000;

/**
 * node_modules holding this control plane's asc; packages a filter imports resolve here first.
 * @solo-io/proxy-runtime looked up here is read from the corrected copy in vendor/ (as-runtime.ts).
 */
const PINNED_NODE_MODULES = (() => {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve("assemblyscript/package.json");
  return path.resolve(path.dirname(pkgJson), "..");
})();

export async function compileFilter(
  entryFile: string,
  opts: CompileOptions = {},
): Promise<CompileOutcome> {
  const entry = path.resolve(entryFile);
  const baseDir = path.resolve(opts.baseDir ?? path.dirname(path.dirname(path.dirname(entry))));
  const argv = [
    path.relative(baseDir, entry),
    "--baseDir", baseDir,
    "--binaryFile", BINARY_OUT,
    // Packages resolve from our node_modules even for filters kept outside this repo.
    "--path", PINNED_NODE_MODULES,
    ...compileRecipe(opts),
  ];
  const { result, durationMs } = await pool.run(
    {
      argv, baseDir, pinnedNodeModules: PINNED_NODE_MODULES, trimExports: opts.build?.trimExports ?? true,
      ...(opts.confineDir ? { confineDir: path.resolve(opts.confineDir) } : {}),
    },
    opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
  if (result.ok) return { ok: true, wasm: result.wasm, durationMs, warnings: result.warnings, trimmedExports: result.trimmed };
  return { ok: false, error: explain(result.error), durationMs };
}

/**
 * The flags that shape the module's bytes (the build cache hashes them: build-key.ts). Paths and
 * where packages resolve from are left out: the key hashes the inputs those locate.
 */
export function compileRecipe(opts: Pick<CompileOptions, "optimize" | "build"> = {}): string[] {
  const build = opts.build ?? {};
  const optimize = build.optimize ?? (opts.optimize ? "O3" : undefined);
  return [
    // proxy-runtime's README: replace asc's `abort` import (Envoy has no env.abort) with
    // its own, which logs through proxy_log and calls wasi proc_exit.
    "--use", "abort=abort_proc_exit",
    // The README uses asc's default runtime; spelled out because the runtime's malloc.ts
    // imports rt/index-full directly and breaks under stub and none. "half" is full, unexported.
    "--runtime", build.runtime ?? "full",
    "--noColors",
    ...ascFlags({ ...build, ...(optimize ? { optimize } : {}) }),
    // Export trimming is not an asc flag: it is keyed through runtimeFingerprint() (as-runtime.ts)
    // and the filter's filter.json, both build-key inputs.
  ];
}

// asc 0.14 throws (rather than reporting a diagnostic) when the --use alias names a global
// that does not exist, i.e. when the entry never pulled in proxy-runtime.
function explain(error: string): string {
  if (!/no such global element: abort_proc_exit/.test(error)) return error;
  return `${error} (does the entry file start with \`export * from "@solo-io/proxy-runtime/proxy";\`?)`;
}

/** Stops the compile workers (they are restarted on the next compile). */
export async function closeCompiler(): Promise<void> {
  await pool.close();
}

/**
 * durationMs runs from handing the job to the worker to its answer: it includes starting a
 * worker when one had to be started, not time spent queued behind other compiles.
 */
type JobOutcome = { result: AscJobResult; durationMs: number };

interface Job {
  request: Omit<WorkerRequest, "id">;
  timeoutMs: number;
  resolve(outcome: JobOutcome): void;
}

/** One worker, one job at a time, FIFO. */
class CompileThread {
  private worker: Worker | undefined;
  private readonly queue: Job[] = [];
  private current:
    | { id: number; job: Job; timer: NodeJS.Timeout; dispatchedAt: number }
    | undefined;
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Nice value for workers started from now on. */
  nice = 0;

  /** Jobs running or queued here. */
  get load(): number {
    return this.queue.length + (this.current ? 1 : 0);
  }

  run(request: Job["request"], timeoutMs: number): Promise<JobOutcome> {
    return new Promise((resolve) => {
      this.queue.push({ request, timeoutMs, resolve });
      this.pump();
    });
  }

  /** Stops the worker; compiles running or queued fail rather than hang. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const worker = this.worker;
    this.worker = undefined;
    const stopped: Job[] = this.queue.splice(0);
    if (this.current) {
      clearTimeout(this.current.timer);
      stopped.unshift(this.current.job);
      this.current = undefined;
    }
    for (const job of stopped) {
      job.resolve({ result: { ok: false, crashed: true, error: "compiler shut down" }, durationMs: 0 });
    }
    if (worker) await worker.terminate();
  }

  private pump(): void {
    if (this.current) return;
    const job = this.queue.shift();
    if (!job) {
      const idle = this.worker;
      if (!idle) return;
      // Don't keep the process alive just for the worker, nor its memory for long.
      idle.unref();
      this.idleTimer = setTimeout(() => this.discard(idle), IDLE_SHUTDOWN_MS).unref();
      return;
    }
    clearTimeout(this.idleTimer);
    const worker = this.worker ?? this.spawn();
    worker.ref();
    const id = this.nextId++;
    const timer = setTimeout(() => {
      this.fail(worker, `compile timed out after ${job.timeoutMs} ms`);
    }, job.timeoutMs);
    this.current = { id, job, timer, dispatchedAt: performance.now() };
    const message: WorkerRequest = { id, ...job.request };
    worker.postMessage(message);
  }

  private spawn(): Worker {
    const worker = startWorker(this.nice);
    this.worker = worker;
    // What the worker printed last (Emscripten's abort, V8's fatal errors): a crash report
    // says it, rather than only an exit code. Still forwarded to our stderr as it comes.
    let output = "";
    worker.stderr.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      output = (output + chunk.toString("utf8")).slice(-STDERR_TAIL_CHARS);
    });
    const last = () => (output.trim() ? `; its last output: ${output.trim()}` : "; it printed nothing");
    worker.on("message", (response: WorkerResponse) => this.onResponse(worker, response));
    worker.on("error", (err) => this.fail(worker, `compiler worker crashed${this.during()}: ${err.name}: ${err.message}${last()}`));
    // stderr may still hold the crash's last lines when "exit" fires: read them first.
    worker.on("exit", (code) => setImmediate(() => this.fail(worker, `compiler worker exited (code ${code})${this.during()}${last()}`)));
    return worker;
  }

  /** " while compiling <entry>" for the job in progress. */
  private during(): string {
    const entry = this.current?.job.request.argv[0];
    return entry ? ` while compiling ${entry}` : "";
  }

  private onResponse(worker: Worker, response: WorkerResponse): void {
    const current = this.current;
    if (!current || current.id !== response.id) return;
    clearTimeout(current.timer);
    this.current = undefined;
    const { id: _id, ...result } = response;
    // A crash may leave the compiler's module-level state inconsistent: start afresh.
    if (!result.ok && result.crashed) this.discard(worker);
    current.job.resolve({ result, durationMs: msSince(current.dispatchedAt) });
    this.pump();
  }

  /** The worker died, hung or crashed: fail its job, drop it, carry on with a new one. */
  private fail(worker: Worker, error: string): void {
    if (worker !== this.worker) return;
    this.discard(worker);
    const current = this.current;
    if (current) {
      clearTimeout(current.timer);
      this.current = undefined;
      current.job.resolve({
        result: { ok: false, crashed: true, error },
        durationMs: msSince(current.dispatchedAt),
      });
    }
    this.pump();
  }

  private discard(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined;
    void worker.terminate();
  }
}

/**
 * Several compile threads (cold starts compile in parallel). A job goes to the thread with the
 * least work; each thread starts its worker on its first job, so a start-up that only hits the
 * build cache starts none.
 */
class CompilePool {
  private threads: CompileThread[] = [new CompileThread()];

  /** Threads from now on; busy threads beyond the new size finish their jobs first. */
  resize(size: number, nices: (index: number) => number): void {
    const next: CompileThread[] = [];
    for (let i = 0; i < size; i++) {
      const thread = this.threads[i] ?? new CompileThread();
      thread.nice = nices(i);
      next.push(thread);
    }
    for (const extra of this.threads.slice(size)) void extra.close();
    this.threads = next;
  }

  get size(): number {
    return this.threads.length;
  }

  run(request: Job["request"], timeoutMs: number): Promise<JobOutcome> {
    const thread = this.threads.reduce((best, t) => (t.load < best.load ? t : best));
    return thread.run(request, timeoutMs);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}

const pool = new CompilePool();

/**
 * How many compiles run at once, at what priority. `workers` threads (each a worker holding asc,
 * about 250 MB RSS while warm); the first `cores - 1` run at `nice`, any beyond at nice 19, so on
 * a small machine a co-located Envoy still gets a core whenever it wants one: the extra compile
 * only uses CPU nobody else does.
 */
export function configureCompiler(opts: { workers: number; nice: number; cores: number }): void {
  if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error(`compile workers must be a positive integer, got ${opts.workers}`);
  const full = Math.max(1, opts.cores - 1);
  pool.resize(opts.workers, (i) => (i < full ? opts.nice : 19));
}

/** Runs later compiles of every thread at `nice` (0-19); see configureCompiler. */
export function setCompileNice(nice: number): void {
  configureCompiler({ workers: pool.size, nice, cores: pool.size + 1 });
}

/** Threads compiling in parallel (for the build scheduler's concurrency). */
export function compileWorkers(): number {
  return pool.size;
}

function msSince(start: number): number {
  return Math.round(performance.now() - start);
}

/**
 * Starts compile-worker.ts. Node 20 does not hand the parent's module hooks (tsx) to worker
 * threads, so the worker registers tsx itself before importing the TypeScript entry.
 */
function startWorker(nice: number): Worker {
  const workerUrl = new URL("./compile-worker.ts", import.meta.url).href;
  const tsxApi = import.meta.resolve("tsx/esm/api");
  // os.setPriority without a pid is setpriority(PRIO_PROCESS, 0): on Linux, the calling thread.
  const lower = nice > 0 ? `(await import("node:os")).setPriority(${nice});\n` : "";
  const boot =
    lower +
    `import { register } from ${JSON.stringify(tsxApi)};\n` +
    `register();\n` +
    `await import(${JSON.stringify(workerUrl)});\n`;
  return new Worker(boot, { eval: true, stderr: true });
}
