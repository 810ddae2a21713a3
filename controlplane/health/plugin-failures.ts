// Which Wasm plugin failed at runtime, from Envoy's stats (measured on Envoy 1.40, see README
// "Runtime failures").
//
// Envoy counts nothing per plugin when a filter with failure_policy FAIL_CLOSED or FAIL_OPEN
// traps: the request gets a 503 (`wasm_fail_stream`) or skips the filter, that worker's VM stays
// failed, and the only per-plugin counters, `wasm.<plugin name>.vm_reload_{success,failure,
// backoff}`, stay 0. With FAIL_RELOAD they move: a request meeting a failed VM either reloads it
// (vm_reload_success / vm_reload_failure) or, inside the reload backoff (about 1 s), is refused
// with a 503 (vm_reload_backoff). A reload, successful or not, follows one crash of the VM:
// reloads are the runtime-failure count used here. Backoff refusals are not: they count requests
// that arrived during the ~1 s after a crash, so one crash under 50 req/s would count ~50 and
// trip any threshold, where FAIL_RELOAD alone would have recovered (measured by the isolation
// report). The plugin name is the filter name (resources.ts).

const FAILURE_STAT = /^wasm\.(.+)\.vm_reload_(success|failure)$/;

/** The plugin whose failure counter `statName` is, or undefined for any other stat. */
export function failurePlugin(statName: string): string | undefined {
  return FAILURE_STAT.exec(statName)?.[1];
}

/**
 * The worker whose watchdog counted a mega miss (`server.worker_<n>.watchdog_mega_miss`): a
 * worker thread that has not come back to its event loop for the watchdog's megamiss timeout,
 * e.g. a Wasm callback spinning forever, which nothing in Envoy interrupts (isolation report).
 */
const STUCK_STAT = /^server\.(worker_\d+)\.watchdog_mega_miss$/;

export function stuckWorker(statName: string): string | undefined {
  return STUCK_STAT.exec(statName)?.[1];
}

/**
 * Turns cumulative counters of one sink stream into increases per key (`keyOf` names the key
 * of a counter it cares about: the plugin of a failure counter, the worker of a watchdog one). The stream's first
 * message is a baseline (what an Envoy counted before this control plane heard from it, e.g.
 * across a control plane restart, is not counted again). Envoy sends only counters that were
 * ever used, so one appearing in a later message rose from 0. A counter that went down (a sink
 * set to report deltas) counts its new value as the increase.
 */
export class CounterDeltas {
  private readonly last = new Map<string, number>();
  private baselined = false;

  constructor(private readonly keyOf: (statName: string) => string | undefined = failurePlugin) {}

  /** Per key, how much its counters rose since the previous message (0s left out). */
  next(counters: Iterable<{ name: string; value: number }>): Map<string, number> {
    const out = new Map<string, number>();
    for (const { name, value } of counters) {
      const plugin = this.keyOf(name);
      if (plugin === undefined || !Number.isFinite(value)) continue;
      const before = this.last.get(name) ?? (this.baselined ? 0 : undefined);
      this.last.set(name, value);
      if (before === undefined) continue;
      const rise = value >= before ? value - before : value;
      if (rise > 0) out.set(plugin, (out.get(plugin) ?? 0) + rise);
    }
    this.baselined = true;
    return out;
  }
}
