import type { EffectiveFilter } from "../registry/effective.ts";
import type { RouteTable } from "../routes/route-table.ts";
import { targetsRoutes } from "../state/operator-state.ts";
import type { FilterResourceSpec, HostPort, ModuleTls, ResourceInputs } from "./resources.ts";

export interface NetworkInputs {
  listener: { address: string; port: number };
  upstream: HostPort;
  /** The routes in force (CP_ROUTES_FILE); absent: the catch-all route to `upstream`. */
  routes?: RouteTable;
  moduleServer: HostPort;
  modulePeers?: readonly HostPort[];
  moduleTls?: ModuleTls;
  /** CP_XDS_TOKEN, for the per-type config sources (resources.ts). */
  xdsToken?: string;
}

/** The routes as a live input of the snapshot: the publisher republishes on each change. */
export interface RoutesFeed {
  current(): RouteTable;
  onChange(listener: () => void): void;
}

/** Only filters with a good module go to Envoy; one that never built stays out of the chain. */
export function resourceInputs(net: NetworkInputs, filters: readonly EffectiveFilter[]): ResourceInputs {
  const specs: FilterResourceSpec[] = [];
  for (const f of filters) {
    if (!f.sha256 || !f.rootId) continue;
    const spec: FilterResourceSpec = { name: f.name, sha256: f.sha256, rootId: f.rootId, enabled: f.enabled };
    if (f.configuration !== undefined) spec.configuration = f.configuration;
    spec.failurePolicy = f.failPolicy;
    if (f.capabilities) spec.allowedCapabilities = f.capabilities.granted;
    // Routes/hosts targets: where in the route table it runs (an RDS switch, rendered by resources.ts).
    if (targetsRoutes(f.targets)) spec.scope = { routes: f.targets!.routes, hosts: f.targets!.hosts };
    if (f.routeConfigurations) spec.routeConfigurations = f.routeConfigurations;
    specs.push(spec);
  }
  return { ...net, filters: specs };
}
