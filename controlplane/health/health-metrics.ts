// Prometheus metrics of runtime health, on the admin app's registry (http/routes/status.ts),
// fed by the event bus:
//   wasmxds_filter_runtime_failures_total{filter}        crashes of the filter's VM, as Envoys'
//                                                         stats report them
//   wasmxds_filter_health_actions_total{filter,action}   automatic responses, action=rolled_back|disabled
//   wasmxds_envoy_worker_stuck_total{node,worker}        watchdog mega misses: a stuck worker thread
import { Counter, type Registry } from "prom-client";
import type { EventBus } from "../events/bus.ts";

/** Registers the metrics and follows the bus; returns the unsubscribe. */
export function addHealthMetrics(registry: Registry, events: EventBus): () => void {
  const registers = [registry];
  const failures = new Counter({ name: "wasmxds_filter_runtime_failures_total", help: "Crashes of the filter's Wasm VM, counted by the reloads that followed (Envoy stats wasm.<filter>.vm_reload_{success,failure}, FAIL_RELOAD only), summed over Envoys.", labelNames: ["filter"], registers });
  const actions = new Counter({ name: "wasmxds_filter_health_actions_total", help: "Automatic responses to repeated runtime failures, by filter and action (rolled_back|disabled).", labelNames: ["filter", "action"], registers });
  const stuck = new Counter({ name: "wasmxds_envoy_worker_stuck_total", help: "Watchdog mega misses Envoys reported (server.worker_<n>.watchdog_mega_miss): a worker thread that stopped returning to its event loop, e.g. a Wasm callback that never returns.", labelNames: ["node", "worker"], registers });
  return events.subscribe((e) => {
    if (e.type === "health.failures") failures.inc({ filter: e.filter }, e.count);
    else if (e.type === "health.action") actions.inc({ filter: e.filter, action: e.action });
    else if (e.type === "health.stuck") stuck.inc({ node: e.node, worker: e.worker }, e.megaMisses);
  });
}
