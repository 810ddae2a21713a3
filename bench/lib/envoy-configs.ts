/**
 * Static Envoy configs for the comparison scenarios. The listener has the control plane's shape
 * (controlplane/xds/resources.ts): one HCM (stat_prefix ingress_http), the filter(s) under test,
 * then the router; the route sends everything to the `upstream` cluster, or answers itself
 * (`direct_response`) so that a filter's cost is not hidden behind the upstream's. Only the
 * route config is inline here where the control plane uses RDS, and the cluster is STATIC where
 * the control plane uses EDS: both are resolved once, off the request path.
 *
 * Written as JSON (which YAML parsers read): a YAML `yes` would reach Envoy as a boolean.
 *
 * Every filter variant does the same work as filters/add-header: add the request header
 * `x-wasm-processed: yes` and the response header `x-wasm-filter: add-header`.
 */

export type FilterKind = "none" | "native" | "lua" | "wasm" | "wasm5" | "rust";

export interface WasmModuleFile {
  /** HCM filter name = PluginConfig name = vm_id, as the control plane names them. */
  name: string;
  rootId: string;
  file: string;
}

export interface StaticEnvoySpec {
  listenerPort: number;
  /** Proxy to 127.0.0.1:<upstreamPort>; absent: `direct_response`. */
  upstreamPort?: number;
  filter: FilterKind;
  /** Module files for "wasm" (one) and "wasm5" (five). */
  wasm?: WasmModuleFile[];
}

const TYPE = "type.googleapis.com/";
export const DIRECT_RESPONSE_BODY = '{"headers":{}}';

const LUA = `function envoy_on_request(handle)
  handle:headers():add("x-wasm-processed", "yes")
end
function envoy_on_response(handle)
  handle:headers():add("x-wasm-filter", "add-header")
end
`;

function httpFilters(spec: StaticEnvoySpec): object[] {
  switch (spec.filter) {
    case "none":
      return [];
    case "native":
      return [{
        name: "envoy.filters.http.header_mutation",
        typed_config: {
          "@type": `${TYPE}envoy.extensions.filters.http.header_mutation.v3.HeaderMutation`,
          mutations: {
            request_mutations: [{ append: { header: { key: "x-wasm-processed", value: "yes" }, append_action: "APPEND_IF_EXISTS_OR_ADD" } }],
            response_mutations: [{ append: { header: { key: "x-wasm-filter", value: "add-header" }, append_action: "APPEND_IF_EXISTS_OR_ADD" } }],
          },
        },
      }];
    case "lua":
      return [{
        name: "envoy.filters.http.lua",
        typed_config: { "@type": `${TYPE}envoy.extensions.filters.http.lua.v3.Lua`, default_source_code: { inline_string: LUA } },
      }];
    case "wasm":
    case "rust":
    case "wasm5": {
      const modules = spec.wasm ?? [];
      const want = spec.filter === "wasm5" ? 5 : 1;
      if (modules.length !== want) throw new Error(`${spec.filter}: expected ${want} module file(s), got ${modules.length}`);
      // The control plane's PluginConfig (resources.ts extensionConfig), with the code read from
      // a local file instead of fetched from the module server.
      return modules.map((m) => ({
        name: m.name,
        typed_config: {
          "@type": `${TYPE}envoy.extensions.filters.http.wasm.v3.Wasm`,
          config: {
            name: m.name,
            root_id: m.rootId,
            vm_config: { vm_id: m.name, runtime: "envoy.wasm.runtime.v8", code: { local: { filename: m.file } } },
          },
        },
      }));
    }
  }
}

export function staticBootstrap(spec: StaticEnvoySpec): string {
  const route = spec.upstreamPort === undefined
    ? { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: DIRECT_RESPONSE_BODY } } }
    : { match: { prefix: "/" }, route: { cluster: "upstream" } };
  const config = {
    node: { id: `bench-static-${spec.filter}`, cluster: "bench" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: 0 } } },
    static_resources: {
      listeners: [{
        name: "wasm_listener",
        address: { socket_address: { address: "127.0.0.1", port_value: spec.listenerPort } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": `${TYPE}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
              stat_prefix: "ingress_http",
              route_config: { name: "local_route", virtual_hosts: [{ name: "all", domains: ["*"], routes: [route] }] },
              http_filters: [
                ...httpFilters(spec),
                { name: "envoy.filters.http.router", typed_config: { "@type": `${TYPE}envoy.extensions.filters.http.router.v3.Router` } },
              ],
            },
          }],
        }],
      }],
      clusters: spec.upstreamPort === undefined ? [] : [{
        name: "upstream",
        type: "STATIC",
        connect_timeout: "2s",
        load_assignment: {
          cluster_name: "upstream",
          endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: spec.upstreamPort } } } }] }],
        },
      }],
    },
  };
  return `# Generated by bench/lib/envoy-configs.ts (${spec.filter}, ${spec.upstreamPort === undefined ? "direct_response" : "proxy"})\n${JSON.stringify(config, null, 2)}
`;
}
