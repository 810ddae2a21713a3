// Decides when filters get built. Per filter: at most one build running and at most one
// more owed, so a burst of saves costs two builds and the last one sees the final state.
// Globally: a bounded number of builds at once (default 1; main.ts passes the number of compile
// threads, see compiler.ts configureCompiler for how they leave a core to Envoy, and placement.ts
// for CP_BUILD_CPUS, which keeps them off Envoy's CPUs altogether).

import type { BuildResult } from "./builder.ts";

export type BuildFn = (name: string) => Promise<BuildResult>;

export interface SchedulerHooks {
  /**
   * Takes a result (e.g. stores the module). A returned promise holds this filter's slot until
   * it settles: the next build of the filter, and idle(), wait for it.
   */
  onResult(result: BuildResult): void | Promise<void>;
  onStart?(name: string): void;
}

export type FilterBuildState = "idle" | "queued" | "running" | "running-dirty";

export class BuildScheduler {
  /** Names waiting for a build slot, oldest first; each appears at most once. */
  private readonly waiting: string[] = [];
  /** Running builds; true when another build is owed once it finishes. */
  private readonly running = new Map<string, boolean>();
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly build: BuildFn,
    private readonly hooks: SchedulerHooks,
    private readonly concurrency = 1,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
    }
  }

  /** Asks for a build of `name` reflecting the filesystem as it is now or later. */
  schedule(name: string): void {
    if (this.running.has(name)) {
      this.running.set(name, true);
    } else if (!this.waiting.includes(name)) {
      this.waiting.push(name);
      this.pump();
    }
  }

  /**
   * Drops queued or owed builds of `name` (e.g. its folder was deleted). A build already
   * running still reports its result.
   */
  cancel(name: string): void {
    const at = this.waiting.indexOf(name);
    if (at >= 0) this.waiting.splice(at, 1);
    if (this.running.has(name)) this.running.set(name, false);
    this.settleIfIdle();
  }

  state(name: string): FilterBuildState {
    const dirty = this.running.get(name);
    if (dirty !== undefined) return dirty ? "running-dirty" : "running";
    return this.waiting.includes(name) ? "queued" : "idle";
  }

  /** Resolves once nothing is running or waiting. */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running.size < this.concurrency) {
      const name = this.waiting.shift();
      if (name === undefined) break;
      this.running.set(name, false);
      void this.run(name);
    }
    this.settleIfIdle();
  }

  private async run(name: string): Promise<void> {
    const started = performance.now();
    let result: BuildResult;
    try {
      this.hooks.onStart?.(name);
      result = await this.build(name);
    } catch (err) {
      // The build function is expected to report failures as results; a throw is a bug,
      // but it must not wedge this filter's queue.
      const message = err instanceof Error ? err.message : String(err);
      result = {
        ok: false,
        name,
        error: `${name}: build crashed: ${message}`,
        buildMs: Math.round(performance.now() - started),
      };
    }
    try {
      await this.hooks.onResult(result);
    } catch {
      // The hook reports its own failures; a throw must not wedge this filter's queue either.
    } finally {
      const owed = this.running.get(name) === true;
      this.running.delete(name);
      if (owed) this.waiting.push(name);
      this.pump();
    }
  }

  private settleIfIdle(): void {
    if (this.running.size > 0 || this.waiting.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
