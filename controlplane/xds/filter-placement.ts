// Where a filter runs in an Envoy's route table, read from the resources that Envoy ACKed (its
// listener and route configurations), not from what we meant to send: the admin API's answer to
// "on which routes and hosts does this filter run, per Envoy". Pure functions over decoded objects.
import { decodeMessage, type ResourceObject } from "./codec.ts";
import { hcmDisabledNames, hcmFilterNames, routeLabel, runsOnRoute, slotName } from "./route-configurations.ts";
import type { EncodedResource } from "./snapshot.ts";

export interface RoutePlacement {
  /** The route configuration (RDS resource) name. */
  routeConfig: string;
  /** The virtual host's name. */
  host: string;
  /** The route's name (`#<index>` for an unnamed one). */
  route: string;
  /** "filter": with the filter's configuration; "route": with the route's own (a per-route slot). */
  configuration: "filter" | "route";
}

export interface Placement {
  /** The filter is in the listener's HTTP filter chain (node targeting can leave it out). */
  inChain: boolean;
  /** Every route it runs on; empty: it runs nowhere on this Envoy. */
  routes: RoutePlacement[];
}

/** Where filter `name` runs given an Envoy's listeners and route configurations (decoded). */
export function placementOf(name: string, listeners: readonly ResourceObject[], routeConfigs: readonly ResourceObject[]): Placement {
  const chain = new Set(listeners.flatMap((l) => hcmFilterNames(l)));
  const disabled = new Set(listeners.flatMap((l) => [...hcmDisabledNames(l)]));
  const inChain = chain.has(name);
  const routes: RoutePlacement[] = [];
  if (!inChain) return { inChain, routes };
  for (const rc of routeConfigs) {
    for (const vh of (rc.virtual_hosts as ResourceObject[] | undefined) ?? []) {
      ((vh.routes as ResourceObject[] | undefined) ?? []).forEach((route, i) => {
        const label = routeLabel(route, i);
        const at = { routeConfig: String(rc.name ?? ""), host: String(vh.name ?? ""), route: label };
        if (runsOnRoute(name, vh, route, disabled.has(name))) {
          routes.push({ ...at, configuration: "filter" });
          return;
        }
        const slot = slotName(name, label);
        if (chain.has(slot) && runsOnRoute(slot, vh, route, disabled.has(slot))) routes.push({ ...at, configuration: "route" });
      });
    }
  }
  return { inChain, routes };
}

export interface KnownRoutes {
  routes: Set<string>;
  /** Virtual host names and every domain they serve, lower-cased (a host target may name either). */
  hosts: Set<string>;
  /** A host target matches: a virtual host's name, or one of its domains (case-insensitive, as Envoy matches hosts). */
  hasHost(host: string): boolean;
  /** For messages: the route names and the virtual hosts with their domains. */
  describe(): string;
}

/** The route names and virtual hosts (names and domains) in route configurations. */
export function knownRoutes(routeConfigs: readonly ResourceObject[]): KnownRoutes {
  const routes = new Set<string>();
  const hosts = new Set<string>();
  const names = new Set<string>();
  const vhosts: string[] = [];
  for (const rc of routeConfigs) {
    for (const vh of (rc.virtual_hosts as ResourceObject[] | undefined) ?? []) {
      const domains = ((vh.domains as unknown[] | undefined) ?? []).map(String);
      if (typeof vh.name === "string") names.add(vh.name);
      for (const d of domains) hosts.add(d.toLowerCase());
      vhosts.push(`${String(vh.name)} (${domains.join(", ")})`);
      for (const r of (vh.routes as ResourceObject[] | undefined) ?? []) {
        if (typeof r.name === "string" && r.name !== "") routes.add(r.name);
      }
    }
  }
  return {
    routes, hosts: new Set([...names, ...hosts]),
    hasHost: (h) => names.has(h) || hosts.has(h.toLowerCase()),
    describe: () => `routes: ${[...routes].sort().join(", ") || "none named"}; virtual hosts: ${vhosts.join("; ") || "none"}`,
  };
}

const decoded = new WeakMap<EncodedResource, ResourceObject>();

/** A served resource as an object (its canonical form; memoised per resource version). */
export function decodeResource(r: EncodedResource): ResourceObject {
  let obj = decoded.get(r);
  if (!obj) {
    const any = r.anyFor();
    obj = decodeMessage(any.type_url, any.value);
    decoded.set(r, obj);
  }
  return obj;
}
