import type { EffectiveFilter } from "../registry/effective.ts";
import type { FilterResourceSpec, HostPort, ModuleTls, ResourceInputs } from "./resources.ts";

export interface NetworkInputs {
  listener: { address: string; port: number };
  upstream: HostPort;
  moduleServer: HostPort;
  modulePeers?: readonly HostPort[];
  moduleTls?: ModuleTls;
  /** CP_XDS_TOKEN, for the per-type config sources (resources.ts). */
  xdsToken?: string;
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
    specs.push(spec);
  }
  return { ...net, filters: specs };
}
