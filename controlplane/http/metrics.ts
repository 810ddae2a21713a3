import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { ClientRegistry } from "../xds/client-status.ts";
import { PUSH_ORDER, shortName } from "../xds/type-urls.ts";

/** Prometheus text exposition of the control plane's counters and gauges. */
export function renderMetrics(registry: FilterRegistry, clients: ClientRegistry): string {
  const lines: string[] = [];
  const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  const streams = clients.list();
  metric("wasmxds_xds_streams", "gauge", "Open xDS streams.", [["", streams.length]]);
  metric("wasmxds_xds_envoys", "gauge", "Connected Envoys (distinct node id and cluster).", [["", new Set(streams.map((c) => `${c.nodeId}\n${c.nodeCluster}`)).size]]);
  metric("wasmxds_xds_nacks_total", "counter", "Responses Envoys rejected (NACK), by type.",
    PUSH_ORDER.map((t) => [`{type="${shortName(t)}"}`, clients.nacksByType.get(t) ?? 0]));
  metric("wasmxds_xds_cache_miss_resends_total", "counter", "ECDS configs re-sent after an Envoy fetched a new module.", [["", clients.cacheMissResends]]);
  const byStatus = new Map<string, number>([["ok", 0], ["building", 0], ["error", 0]]);
  for (const f of registry.list()) byStatus.set(f.status, (byStatus.get(f.status) ?? 0) + 1);
  metric("wasmxds_filters", "gauge", "Filters by build status.", [...byStatus].map(([s, n]) => [`{status="${s}"}`, n]));
  return lines.join("\n") + "\n";
}
