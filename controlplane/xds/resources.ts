import { createHash } from "node:crypto";
import net from "node:net";
import { defaultCapabilities } from "../compile/capabilities.ts";
import { DEFAULT_FAIL_POLICY } from "../registry/effective.ts";
import { defaultRouteTable, type Route, type RouteTable, type VirtualHost } from "../routes/route-table.ts";
import type { ResourceObject } from "./codec.ts";
import { hcmDisabledNames, routeSlots, withRouteConfigurations } from "./route-configurations.ts";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, TYPE_PREFIX } from "./type-urls.ts";

/** Everything a snapshot's resources are derived from; nothing else may influence them. */
export interface ResourceInputs {
  listener: { address: string; port: number };
  upstream: HostPort;
  /** The routes file (CP_ROUTES_FILE); absent: one catch-all route to `upstream` (defaultRouteTable). */
  routes?: RouteTable;
  moduleServer: HostPort;
  /**
   * More endpoints of the module cluster (CP_MODULE_PEERS: other replicas' module servers). The
   * URL names moduleServer; any endpoint serves any stored module, so Envoy's fetch (and its
   * retry) can land on whichever replica is up.
   */
  modulePeers?: readonly HostPort[];
  /** The module server speaks HTTPS (CP_TLS_CERT): how Envoy verifies it. Absent: plain HTTP. */
  moduleTls?: ModuleTls;
  /** Filters that have a good module, in chain order. */
  filters: readonly FilterResourceSpec[];
  /**
   * CP_XDS_TOKEN: per-type config sources (RDS, ECDS, EDS streams Envoy opens because of what we
   * send) carry it as initial_metadata, like the bootstrap's. Only authenticated Envoys get them.
   */
  xdsToken?: string;
  /**
   * For Envoys that keep their own listeners and take only our filters over ECDS (docs/ecds-only.md):
   * they do not use our route, so a disabled filter is sent as NATIVE_NOOP_FILTER_TYPE instead.
   */
  ecdsOnly?: boolean;
}

export interface ModuleTls {
  /** CA file Envoy trusts for the module server, as a path on Envoy's machine (CP_MODULE_TLS_CA_FOR_ENVOY). */
  caFile: string;
  /** The module server's host (CP_MODULE_ADDRESS): SNI when a name, and the SAN its certificate must carry. */
  sni: string;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface FilterResourceSpec {
  name: string;
  sha256: string;
  rootId: string;
  enabled: boolean;
  configuration?: string;
  /** What Envoy does when the filter's VM cannot run or has crashed (default DEFAULT_FAIL_POLICY). */
  failurePolicy?: FailurePolicyName;
  /**
   * The `allowed_capabilities` keys (capabilities.ts). Absent: the base set plus every
   * callback, never an empty map (which Envoy reads as "everything allowed").
   */
  allowedCapabilities?: readonly string[];
  /**
   * Where in the route table the filter runs (issue 15; filled from its targets' `routes` and
   * `hosts`). Absent: on every route. Present: only on the routes named in `routes` and on
   * every route of the virtual hosts named in `hosts`; disabled elsewhere through RDS
   * `typed_per_filter_config`, so a change of scope is an RDS update only (no listener change,
   * no new VM).
   */
  scope?: FilterScope;
  /**
   * Route name -> a plugin configuration for that route: an extra HCM filter slot per entry,
   * sharing the filter's VM (route-configurations.ts). Absent: none.
   */
  routeConfigurations?: Readonly<Record<string, string>>;
}

/**
 * A filter's place in the route table (routes file): route names, and virtual hosts each named
 * by its name or by any of its domains (`b.example` selects the virtual host serving it).
 */
export interface FilterScope {
  routes: readonly string[];
  hosts: readonly string[];
}

/** open: skip the filter; closed: answer 503; reload: like closed, and rebuild a crashed VM. */
export type FailurePolicyName = "open" | "closed" | "reload";

/** envoy.extensions.wasm.v3.FailurePolicy values (see protos.ts for where they come from). */
const FAILURE_POLICY: Record<FailurePolicyName, string> = {
  open: "FAIL_OPEN",
  closed: "FAIL_CLOSED",
  reload: "FAIL_RELOAD",
};

export const LISTENER_NAME = "wasm_listener";
export const ROUTE_NAME = "local_route";
export const UPSTREAM_CLUSTER = "upstream";
export const MODULE_CLUSTER = "wasm_modules";
const WASM_FILTER_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.wasm.v3.Wasm`;
/**
 * What a disabled filter is on an ECDS-only Envoy (docs/ecds-only.md): a native filter that does
 * nothing (a HeaderMutation without mutations: no VM, no drain). Allowed only where the Envoy's
 * config_discovery type_urls list it; elsewhere Envoy NACKs it and keeps the Wasm config.
 */
export const NATIVE_NOOP_FILTER_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.header_mutation.v3.HeaderMutation`;
/** The bootstrap's static cluster to the control plane (envoy-bootstrap/envoy.yaml). */
export const XDS_CLUSTER = "xds_cluster";

/** How an Envoy talks to us: one ADS stream, or the per-type services (SotW or Delta). */
export type ConfigSourceKind = "ads" | "grpc" | "delta_grpc";

/** Where an Envoy fetches the resources a listener or cluster refers to (RDS, ECDS, EDS). */
function configSource(kind: ConfigSourceKind, xdsToken: string | undefined): ResourceObject {
  if (kind === "ads") return { ads: {}, resource_api_version: "V3" };
  const metadata = xdsToken === undefined ? {} : { initial_metadata: [{ key: "authorization", value: `Bearer ${xdsToken}` }] };
  return {
    api_config_source: {
      api_type: kind === "grpc" ? "GRPC" : "DELTA_GRPC",
      transport_api_version: "V3",
      grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER }, ...metadata }],
    },
    resource_api_version: "V3",
  };
}

/**
 * How one Envoy gets an ECDS resource. Remote Wasm code is only fetched on Envoy's init path
 * (listener warming); an update to a warm listener with an uncached sha256 is accepted but
 * never fetched, and the filter silently stops running (measured on 1.40). So a filter an
 * Envoy is warming gets `nack_on_code_cache_miss: false` (fetch during warming), and an update
 * to a warm filter gets `true`: Envoy NACKs, keeps the old module serving, fetches in the
 * background, and the control plane re-sends once the module server saw that fetch complete.
 * The node id in the module URL is what lets the module server tell whose fetch completed.
 */
export interface DeliveryVariant {
  nodeId: string;
  nackOnCacheMiss: boolean;
  /**
   * The re-send after this Envoy fetched the module: `&fetched=1` on the URL makes it differ
   * from the config Envoy just rejected (which it would ignore), while nack_on_code_cache_miss
   * stays true, so a fetch that failed (bytes whose sha256 does not match) is a NACK that keeps
   * the old module running, not an ACK of a filter without code.
   */
  afterFetch?: boolean;
  /** Listeners and clusters name their RDS/ECDS/EDS source the way this Envoy connected. */
  source: ConfigSourceKind;
}

/**
 * A resource whose bytes depend on the Envoy it goes to. Its version comes from `canonical`,
 * so every replica and every Envoy agree on versions; `key` names the variant's relevant part.
 */
export interface VariantResource {
  canonical: ResourceObject;
  key(variant: DeliveryVariant): string;
  render(variant: DeliveryVariant): ResourceObject;
  /**
   * Set when the node id enters `render`'s output only as this text, in one string field (the
   * module URL's query): a node's bytes are then spliced into one encoding per change (snapshot.ts).
   */
  nodeText?(nodeId: string): string;
}

/** Resources by type URL, then by name, as YAML-shaped objects ready for the codec. */
export type ResourceSet = Map<string, Map<string, ResourceObject | VariantResource>>;

export function isVariantResource(r: ResourceObject | VariantResource): r is VariantResource {
  return typeof (r as VariantResource).render === "function";
}

export function buildResources(inputs: ResourceInputs): ResourceSet {
  const set: ResourceSet = new Map();
  const table = inputs.routes ?? defaultRouteTable(inputs.upstream);
  // Sorted by name: a reordered routes file renders the same resources.
  const upstreams = [
    ...[...table.upstreams].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((u) => ({ name: u.name, targets: u.endpoints, connectTimeoutMs: u.connectTimeoutMs })),
    { name: MODULE_CLUSTER, targets: [inputs.moduleServer, ...(inputs.modulePeers ?? [])], connectTimeoutMs: 2000 },
  ];
  const clusterOf = (name: string, targets: readonly HostPort[], connectTimeoutMs: number) => bySource((source) =>
    cluster(name, targets, source, name === MODULE_CLUSTER ? inputs.moduleTls : undefined, inputs.xdsToken, connectTimeoutMs));
  set.set(CLUSTER, new Map(upstreams.map(({ name, targets, connectTimeoutMs }) => [name, clusterOf(name, targets, connectTimeoutMs)])));
  // An IP upstream's endpoints come over EDS (so they can change without a CDS update);
  // a DNS name is resolved by Envoy itself.
  set.set(ENDPOINT, new Map(upstreams.filter(({ targets }) => net.isIP(targets[0]!.host)).map(({ name, targets }) => [name, loadAssignment(name, targets)])));
  set.set(LISTENER, new Map([[LISTENER_NAME, bySource((source) => listener(inputs, source))]]));
  set.set(ROUTE, byName([routeConfiguration(table, inputs.filters)]));
  const replicated = (inputs.modulePeers?.length ?? 0) > 0;
  set.set(EXTENSION_CONFIG, new Map(inputs.filters.map((f): [string, ResourceObject | VariantResource] => {
    if (inputs.ecdsOnly && !f.enabled) return [f.name, nativeNoop(f.name)];
    // Per filter, not per Envoy: a push renders this for every Envoy that runs the filter.
    const vm = vmIdentity(f);
    return [f.name, {
      canonical: extensionConfig(f, vm, inputs.moduleServer, CANONICAL_VARIANT, inputs.moduleTls !== undefined, replicated),
      key: (v: DeliveryVariant) => `${v.nodeId}\n${v.nackOnCacheMiss}\n${v.afterFetch === true}`,
      render: (v: DeliveryVariant) => extensionConfig(f, vm, inputs.moduleServer, v, inputs.moduleTls !== undefined, replicated),
      nodeText: nodeQueryValue,
    }];
  })));
  addRouteConfigurations(set, inputs, replicated);
  return set;
}

/**
 * Per-route configurations (route-configurations.ts): each slot's ECDS resource (the filter's,
 * with the route's configuration and the filter's VM identity), and the RDS switches turning the
 * slot on where the filter runs on its route. Applied to the rendered routes, whatever decided them.
 */
function addRouteConfigurations(set: ResourceSet, inputs: ResourceInputs, replicated: boolean): void {
  if (!inputs.filters.some((f) => routeSlots(f).length > 0)) return;
  const ecds = set.get(EXTENSION_CONFIG)!;
  const https = inputs.moduleTls !== undefined;
  for (const f of inputs.filters) {
    const vm = vmIdentity(f);
    for (const s of routeSlots(f)) {
      const spec: FilterResourceSpec = { ...f, name: s.name, configuration: s.configuration };
      ecds.set(s.name, {
        canonical: extensionConfig(spec, vm, inputs.moduleServer, CANONICAL_VARIANT, https, replicated),
        key: (v: DeliveryVariant) => `${v.nodeId}\n${v.nackOnCacheMiss}\n${v.afterFetch === true}`,
        render: (v: DeliveryVariant) => extensionConfig(spec, vm, inputs.moduleServer, v, https, replicated),
        nodeText: nodeQueryValue,
      });
    }
  }
  const listeners = [...(set.get(LISTENER)?.values() ?? [])].map((l) => (isVariantResource(l) ? l.canonical : l));
  const hcmDisabled = new Set(listeners.flatMap((l) => [...hcmDisabledNames(l)]));
  const routes = set.get(ROUTE) ?? new Map();
  for (const [name, rc] of routes) {
    if (!isVariantResource(rc)) routes.set(name, withRouteConfigurations(rc, inputs.filters, hcmDisabled));
  }
}

const CANONICAL_VARIANT: DeliveryVariant = { nodeId: "", nackOnCacheMiss: true, source: "ads" };

/** A disabled filter for an ECDS-only Envoy: same name, no module, no VM (NATIVE_NOOP_FILTER_TYPE). */
function nativeNoop(name: string): ResourceObject {
  return { name, typed_config: { "@type": NATIVE_NOOP_FILTER_TYPE, mutations: {} } };
}

/** Whether an ECDS resource is the native no-op (its NACK says "not in type_urls", not "bad version"). */
export function isNativeNoop(resource: ResourceObject): boolean {
  return (resource.typed_config as { "@type"?: unknown } | undefined)?.["@type"] === NATIVE_NOOP_FILTER_TYPE;
}

function bySource(make: (source: ConfigSourceKind) => ResourceObject): VariantResource {
  return { canonical: make("ads"), key: (v) => v.source, render: (v) => make(v.source) };
}

function byName(resources: ResourceObject[]): Map<string, ResourceObject> {
  return new Map(resources.map((r) => [r.name as string, r]));
}

/** The node id as moduleUrl writes it in the query (`node=<this>`). */
export function nodeQueryValue(nodeId: string): string {
  // Characters form encoding keeps as they are (the usual node id): no encoder needed.
  if (/^[\w.*-]*$/.test(nodeId)) return nodeId;
  return new URLSearchParams({ node: nodeId }).toString().slice("node=".length);
}

export function moduleUrl(moduleServer: HostPort, sha256: string, nodeId = "", https = false, afterFetch = false): string {
  const params = new URLSearchParams();
  if (nodeId !== "") params.set("node", nodeId);
  if (afterFetch) params.set("fetched", "1");
  const query = params.size > 0 ? `?${params.toString()}` : "";
  return `${https ? "https" : "http"}://${hostPort(moduleServer)}/modules/${sha256}.wasm${query}`;
}

function hostPort({ host, port }: HostPort): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function loadAssignment(name: string, targets: readonly HostPort[]): ResourceObject {
  const lbEndpoints = targets.map((t) => ({ endpoint: { address: { socket_address: { address: t.host, port_value: t.port } } } }));
  return { cluster_name: name, endpoints: [{ lb_endpoints: lbEndpoints }] };
}

function cluster(
  name: string, targets: readonly HostPort[], source: ConfigSourceKind, tls: ModuleTls | undefined, xdsToken: string | undefined,
  connectTimeoutMs: number,
): ResourceObject {
  const connect_timeout = duration(connectTimeoutMs);
  const c: ResourceObject = net.isIP(targets[0]!.host)
    ? { name, type: "EDS", connect_timeout, eds_cluster_config: { eds_config: configSource(source, xdsToken) } }
    // A name (the compose service, host.docker.internal) needs Envoy's resolver.
    : { name, type: "STRICT_DNS", connect_timeout, load_assignment: loadAssignment(name, targets) };
  if (tls) c.transport_socket = moduleTransportSocket(tls);
  // Several endpoints (replica module servers): a TCP check takes a dead one out within a second,
  // so a module download never waits on it (measured: without it, a fetch that picked the dead
  // replica never reached a live one before the cache-miss grace ran out). Only the module
  // cluster: an operator's upstreams are not probed behind their backs (routes can retry).
  if (name === MODULE_CLUSTER && targets.length > 1) {
    c.health_checks = [{
      timeout: { seconds: 1 }, interval: { seconds: 1 }, no_traffic_interval: { seconds: 1 },
      unhealthy_threshold: { value: 1 }, healthy_threshold: { value: 1 }, tcp_health_check: {},
    }];
  }
  return c;
}

/**
 * TLS from Envoy to the module server (only the module cluster gets `tls`). Envoy checks the
 * chain against `caFile` and, since a trusted CA alone would accept any host it signed, the
 * certificate's SAN against the module host (DNS name or IP). SNI is sent for a name only:
 * RFC 6066 forbids IP literals there. Both values come from config, so versions stay
 * content hashes of the same bytes on every replica.
 */
function moduleTransportSocket(tls: ModuleTls): ResourceObject {
  const isIp = net.isIP(tls.sni) !== 0;
  const context: ResourceObject = {
    "@type": `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
    common_tls_context: {
      validation_context: {
        trusted_ca: { filename: tls.caFile },
        match_typed_subject_alt_names: [{ san_type: isIp ? "IP_ADDRESS" : "DNS", matcher: { exact: tls.sni } }],
      },
    },
  };
  if (!isIp) context.sni = tls.sni;
  return { name: "envoy.transport_sockets.tls", typed_config: context };
}

function listener(inputs: ResourceInputs, source: ConfigSourceKind): ResourceObject {
  const httpFilters: ResourceObject[] = inputs.filters.map((f) => ({
    name: f.name,
    // The filter body comes over ECDS, so a module change or a config change never touches
    // the listener (an LDS update would drain its connections).
    config_discovery: {
      config_source: configSource(source, inputs.xdsToken),
      type_urls: [WASM_FILTER_TYPE],
    },
  }));
  // Each per-route configuration slot right after its filter, off unless a route turns it on
  // (route-configurations.ts). httpFilters still has one entry per filter here.
  for (let i = httpFilters.length - 1; i >= 0; i--) {
    httpFilters.splice(i + 1, 0, ...routeSlots(inputs.filters[i]!).map((s) => ({ ...httpFilters[i]!, name: s.name, disabled: true })));
  }
  httpFilters.push({
    name: "envoy.filters.http.router",
    typed_config: { "@type": `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router` },
  });
  return {
    name: LISTENER_NAME,
    address: { socket_address: { address: inputs.listener.address, port_value: inputs.listener.port } },
    filter_chains: [{
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        typed_config: {
          "@type": `${TYPE_PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
          stat_prefix: "ingress_http",
          rds: { route_config_name: ROUTE_NAME, config_source: configSource(source, inputs.xdsToken) },
          http_filters: httpFilters,
        },
      }],
    }],
  };
}

const FILTER_CONFIG_TYPE = `${TYPE_PREFIX}envoy.config.route.v3.FilterConfig`;

/**
 * The route table as Envoy's RouteConfiguration, with each filter switched off where it must
 * not run. Switching is a route-level matter keyed by the HCM filter name (an RDS change,
 * hitless): `FilterConfig{disabled: true}` on a virtual host or a route; Envoy takes the most
 * specific one (route, then virtual host, then route configuration). Only `disabled` entries
 * are ever written, so an operator's disable can never be undone by a scope:
 *  - disabled by the operator (`enabled: false`): off on every virtual host;
 *  - scoped, on a virtual host the scope names: nothing (on everywhere there);
 *  - scoped, elsewhere: off on the virtual host when none of its routes is in scope, otherwise
 *    off on each of its routes that is not.
 */
export function routeConfiguration(table: RouteTable, filters: readonly FilterResourceSpec[]): ResourceObject {
  const sorted = [...filters].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const virtualHosts = table.virtualHosts.map((vh) => {
    const offOnHost: string[] = [];
    const offOnRoute = new Map<string, string[]>();
    for (const f of sorted) {
      if (!f.enabled) {
        offOnHost.push(f.name);
        continue;
      }
      if (!f.scope || hostInScope(vh, f.scope)) continue;
      const inScope = vh.routes.filter((r) => f.scope!.routes.includes(r.name));
      if (inScope.length === 0) {
        offOnHost.push(f.name);
        continue;
      }
      for (const r of vh.routes) {
        if (!inScope.includes(r)) offOnRoute.set(r.name, [...(offOnRoute.get(r.name) ?? []), f.name]);
      }
    }
    const routes = vh.routes.map((r) => routeEntry(r, offOnRoute.get(r.name) ?? []));
    const vhost: ResourceObject = { name: vh.name, domains: [...vh.domains], routes };
    if (offOnHost.length > 0) vhost.typed_per_filter_config = disabledFilters(offOnHost);
    return vhost;
  });
  return { name: ROUTE_NAME, virtual_hosts: virtualHosts };
}

/** A virtual host is in scope by its name or by any of its domains (case-insensitive, as Envoy matches hosts). */
function hostInScope(vh: VirtualHost, scope: FilterScope): boolean {
  return scope.hosts.some((h) => h === vh.name || vh.domains.some((d) => d.toLowerCase() === h.toLowerCase()));
}

/** `names` are already sorted: the map's key order, and so the encoded bytes, are deterministic. */
function disabledFilters(names: readonly string[]): ResourceObject {
  return Object.fromEntries(names.map((n) => [n, { "@type": FILTER_CONFIG_TYPE, disabled: true }]));
}

function routeEntry(r: Route, off: readonly string[]): ResourceObject {
  const match: ResourceObject = {};
  if (r.match.prefix !== undefined) match.prefix = r.match.prefix;
  if (r.match.path !== undefined) match.path = r.match.path;
  if (r.match.regex !== undefined) match.safe_regex = { regex: r.match.regex };
  if (r.match.headers && r.match.headers.length > 0) {
    match.headers = r.match.headers.map((h) => {
      if (h.present !== undefined) return { name: h.name, present_match: h.present };
      const string_match = h.exact !== undefined ? { exact: h.exact }
        : h.prefix !== undefined ? { prefix: h.prefix } : { safe_regex: { regex: h.regex! } };
      return { name: h.name, string_match };
    });
  }
  const action: ResourceObject = { cluster: r.upstream };
  if (r.timeoutMs !== undefined) action.timeout = duration(r.timeoutMs);
  if (r.retries) action.retry_policy = { retry_on: r.retries.retryOn, num_retries: { value: r.retries.numRetries } };
  const entry: ResourceObject = { name: r.name, match, route: action };
  if (off.length > 0) entry.typed_per_filter_config = disabledFilters(off);
  return entry;
}

/** google.protobuf.Duration as the codec takes it (not the JSON "2s" form). */
function duration(ms: number): ResourceObject {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  return nanos === 0 ? { seconds } : { seconds, nanos };
}

/** The granted capabilities (sorted, never empty) and the vm_id derived from them. */
interface VmIdentity {
  allowed: readonly string[];
  vmId: string;
}

function vmIdentity(filter: FilterResourceSpec): VmIdentity {
  const allowed = filter.allowedCapabilities && filter.allowedCapabilities.length > 0 ? [...filter.allowedCapabilities].sort() : defaultCapabilities();
  return { allowed, vmId: vmId(filter.name, allowed) };
}

function extensionConfig(
  filter: FilterResourceSpec, { allowed, vmId }: VmIdentity, moduleServer: HostPort, variant: DeliveryVariant, https: boolean, replicated: boolean,
): ResourceObject {
  const pluginConfig: ResourceObject = {
    name: filter.name,
    root_id: filter.rootId,
    vm_config: {
      vm_id: vmId,
      runtime: "envoy.wasm.runtime.v8",
      nack_on_code_cache_miss: variant.nackOnCacheMiss,
      code: {
        remote: {
          http_uri: { uri: moduleUrl(moduleServer, filter.sha256, variant.nodeId, https, variant.afterFetch === true), cluster: MODULE_CLUSTER, timeout: { seconds: 10 } },
          sha256: filter.sha256,
          // Several module endpoints (replicas): a fetch that lands on a dead one retries on the
          // next within ~0.1 s instead of Envoy's 1 s default back-off, so the download ends
          // inside the cache-miss grace the control plane gives it (xds/ecds-delivery.ts).
          retry_policy: replicated
            ? { num_retries: { value: 5 }, retry_back_off: { base_interval: { nanos: 100_000_000 }, max_interval: { seconds: 1 } } }
            : { num_retries: { value: 3 } },
        },
      },
    },
  };
  if (filter.configuration !== undefined) {
    pluginConfig.configuration = { "@type": `${TYPE_PREFIX}google.protobuf.StringValue`, value: filter.configuration };
  }
  // failure_policy replaces the deprecated fail_open; Envoy rejects a config with both. Always
  // explicit, so Envoy's config_dump shows what applies.
  pluginConfig.failure_policy = FAILURE_POLICY[filter.failurePolicy ?? DEFAULT_FAIL_POLICY];
  // Never empty: an empty map means "everything allowed" to proxy-wasm.
  pluginConfig.capability_restriction_config = { allowed_capabilities: Object.fromEntries(allowed.map((c) => [c, {}])) };
  return {
    name: filter.name,
    typed_config: { "@type": WASM_FILTER_TYPE, config: pluginConfig },
  };
}

/**
 * proxy-wasm caches VMs by (vm_id, vm configuration, code) and fixes a VM's capabilities when
 * it is created, so a change of capabilities alone (same module) can meet a cached VM with the
 * old set while anything still references it. (With vm_id = name, Envoy 1.40 did pick up the
 * new set in our e2e run, the old VM having been released first: lifetimes, not a guarantee.)
 * Deriving the vm_id from the granted set makes such a change always start new VMs.
 */
function vmId(name: string, allowed: readonly string[]): string {
  return `${name}.caps-${createHash("sha256").update(allowed.join(",")).digest("hex").slice(0, 12)}`;
}
