// Type URLs of the xDS resources this control plane serves, in the order a push sends them:
// clusters before the endpoints and listeners that use them, listeners before their routes
// and filters.
export const TYPE_PREFIX = "type.googleapis.com/";

export const CLUSTER = `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`;
export const ENDPOINT = `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;
export const LISTENER = `${TYPE_PREFIX}envoy.config.listener.v3.Listener`;
export const ROUTE = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
export const EXTENSION_CONFIG = `${TYPE_PREFIX}envoy.config.core.v3.TypedExtensionConfig`;

export const PUSH_ORDER: readonly string[] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTENSION_CONFIG];

/** Short names for logs and the admin API. */
export const SHORT_NAMES: Readonly<Record<string, string>> = {
  [CLUSTER]: "CDS",
  [ENDPOINT]: "EDS",
  [LISTENER]: "LDS",
  [ROUTE]: "RDS",
  [EXTENSION_CONFIG]: "ECDS",
};

export function shortName(typeUrl: string): string {
  return SHORT_NAMES[typeUrl] ?? typeUrl;
}
