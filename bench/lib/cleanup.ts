/**
 * Everything the bench starts is registered here and stopped in reverse order on success, on
 * failure (try/finally in run.ts) and on Ctrl-C / SIGTERM (which also abort running load).
 */
export class Cleanup {
  private readonly steps: { what: string; fn: () => Promise<void> | void }[] = [];
  private running: Promise<void> | undefined;
  readonly abort = new AbortController();

  add(what: string, fn: () => Promise<void> | void): void {
    this.steps.push({ what, fn });
  }

  /** Runs every step once, last registered first; a failing step does not stop the others. */
  run(): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.splice(0).reverse()) {
        try {
          await step.fn();
        } catch (err) {
          console.error(`cleanup: ${step.what}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })();
    return this.running;
  }

  /** SIGINT/SIGTERM: abort load, clean up, exit 130/143. A second signal exits at once. */
  installSignalHandlers(): void {
    let interrupted = false;
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      process.on(signal, () => {
        if (interrupted) process.exit(code);
        interrupted = true;
        console.error(`\n${signal}: stopping load and cleaning up (again to exit at once)`);
        this.abort.abort(new Error(signal));
        void this.run().finally(() => process.exit(code));
      });
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
