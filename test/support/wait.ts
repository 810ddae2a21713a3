/**
 * Condition polling with a deadline. Tests wait on observable conditions (an admin endpoint,
 * a stat, a response), never on fixed sleeps.
 */

export type Probe<T> = () => Promise<T | undefined | false> | T | undefined | false;

export interface WaitOptions {
  /** Overall deadline, including the time spent inside the probe. */
  timeoutMs: number;
  /** Pause between two probe calls (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the error message: "timed out after Xms waiting for <what>". */
  what: string;
  /** Extra context appended to the timeout error (e.g. an Envoy log tail). */
  details?: () => string | Promise<string>;
  /** Stops polling early: waitFor rejects with the signal's reason (e.g. "envoy exited"). */
  signal?: AbortSignal;
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (cause: ${err.cause.message})` : "";
    return `${err.message}${cause}`;
  }
  return String(err);
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(`aborted: ${String(signal.reason)}`);
}

/**
 * Calls `probe` until it returns something other than `undefined` or `false` and resolves with
 * that value. A probe that throws counts as "not yet" and its error is remembered. A probe that
 * hangs is abandoned at the deadline. On timeout, rejects with
 * `Error("timed out after <timeoutMs>ms waiting for <what>; last error: <...>")`.
 */
export async function waitFor<T>(probe: Probe<T>, opts: WaitOptions): Promise<T> {
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: string | undefined;
  let lastValue: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const expired = Symbol("expired");
  const { signal } = opts;

  /** Resolves with `expired` after `ms`, rejects if the signal aborts first. */
  const sleep = (ms: number): Promise<typeof expired> =>
    new Promise((resolve, reject) => {
      timer = setTimeout(() => resolve(expired), ms);
      if (signal) {
        onAbort = () => reject(abortError(signal));
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  const cleanup = (): void => {
    clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener("abort", onAbort);
  };

  for (;;) {
    if (signal?.aborted) throw abortError(signal);
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const deadlineHit = sleep(remaining);
    let result: T | undefined | false | typeof expired;
    try {
      result = await Promise.race([Promise.resolve().then(probe), deadlineHit]);
    } catch (err) {
      if (signal?.aborted) {
        cleanup();
        throw abortError(signal);
      }
      lastError = describeError(err);
      result = undefined;
    } finally {
      cleanup();
    }
    deadlineHit.catch(() => undefined); // an abort after the race settled is not an error
    if (result === expired) {
      lastError = lastError ?? "probe still running at the deadline";
      break;
    }
    if (result !== undefined && result !== false) return result;
    lastValue = String(result);
    const pause = Math.min(intervalMs, deadline - Date.now());
    if (pause <= 0) break;
    const paused = sleep(pause);
    try {
      await paused;
    } finally {
      cleanup();
    }
  }

  let message = `timed out after ${opts.timeoutMs}ms waiting for ${opts.what}; last error: ${
    lastError ?? `none (probe returned ${lastValue ?? "nothing"})`
  }`;
  if (opts.details) {
    try {
      message += `\n${await opts.details()}`;
    } catch (err) {
      message += `\n(details unavailable: ${describeError(err)})`;
    }
  }
  throw new Error(message);
}
