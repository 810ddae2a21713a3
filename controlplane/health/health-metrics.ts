// Prometheus metrics of runtime health, on the admin app's registry (http/routes/status.ts),
// fed by the event bus:
//   wasmxds_filter_runtime_failures_total{filter}        requests that met a failed VM of the
//                                                         filter, as Envoys' stats report them
//   wasmxds_filter_health_actions_total{filter,action}   automatic responses, action=rolled_back|disabled
import { Counter, type Registry } from "prom-client";
import type { EventBus } from "../events/bus.ts";

/** Registers the metrics and follows the bus; returns the unsubscribe. */
export function addHealthMetrics(registry: Registry, events: EventBus): () => void {
  const registers = [registry];
  const failures = new Counter({ name: "wasmxds_filter_runtime_failures_total", help: "Crashes of the filter's Wasm VM, counted by the reloads that followed (Envoy stats wasm.<filter>.vm_reload_{success,failure}, FAIL_RELOAD only), summed over Envoys.", labelNames: ["filter"], registers });
  const actions = new Counter({ name: "wasmxds_filter_health_actions_total", help: "Automatic responses to repeated runtime failures, by filter and action (rolled_back|disabled).", labelNames: ["filter", "action"], registers });
  return events.subscribe((e) => {
    if (e.type === "health.failures") failures.inc({ filter: e.filter }, e.count);
    else if (e.type === "health.action") actions.inc({ filter: e.filter, action: e.action });
  });
}
