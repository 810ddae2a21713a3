// A different plugin configuration on one route (issue 15).
//
// Envoy 1.40's Wasm HTTP filter has no route-specific config: a `typed_per_filter_config` entry
// holding a Wasm config is rejected ("The filter ... doesn't support virtual host or route
// specific configurations", checked with `envoy --mode validate`), and `FilterConfig` can only
// switch a filter on or off. So a route's own configuration needs its own HCM filter slot:
//   - listener: right after the filter's slot, `<filter>@<route>` with `disabled: true` (off
//     unless a route turns it on), its body over ECDS like every filter;
//   - ECDS: the filter's own resource with the route's configuration, and the same vm_id, code and
//     (empty) vm configuration, so Envoy reuses the filter's VM and only adds a root context;
//   - RDS: on that route, where the filter runs, the filter is switched off and the slot on.
// Adding or removing a slot changes the listener (a drain); changing a slot's configuration is
// an ECDS update, and retargeting the filter an RDS one (docs/per-route-filters.md).
import type { ResourceObject } from "./codec.ts";
import type { FilterResourceSpec } from "./resources.ts";
import { TYPE_PREFIX } from "./type-urls.ts";

const FILTER_CONFIG = `${TYPE_PREFIX}envoy.config.route.v3.FilterConfig`;

/** The HCM filter and ECDS resource name of `filter`'s slot for `route`. */
export function slotName(filter: string, route: string): string {
  return `${filter}@${route}`;
}

export interface RouteSlot {
  /** HCM filter and ECDS resource name. */
  name: string;
  route: string;
  configuration: string;
}

/** The extra slots of a filter, by route name (a stable order: the listener must not churn). */
export function routeSlots(f: Pick<FilterResourceSpec, "name" | "routeConfigurations">): RouteSlot[] {
  return Object.entries(f.routeConfigurations ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([route, configuration]) => ({ name: slotName(f.name, route), route, configuration }));
}

type PerFilter = Record<string, unknown> | undefined;

/**
 * Whether HCM filter `name` runs on a route, read from rendered (or decoded) RDS objects the way
 * Envoy reads them: the route's `typed_per_filter_config` entry, else the virtual host's, else
 * the HCM default (`hcmDisabled`: the filter is marked `disabled: true` in the listener).
 */
export function runsOnRoute(name: string, virtualHost: ResourceObject, route: ResourceObject, hcmDisabled: boolean): boolean {
  const entry = (route.typed_per_filter_config as PerFilter)?.[name] ?? (virtualHost.typed_per_filter_config as PerFilter)?.[name];
  if (entry === undefined || entry === null || typeof entry !== "object") return !hcmDisabled;
  const e = entry as ResourceObject;
  // A FilterConfig: `disabled` switches off; otherwise it is on (its config may be an empty Any).
  if (e["@type"] === FILTER_CONFIG) return e.disabled !== true;
  // Any other entry is a filter-specific per-route config: the filter runs with it.
  return true;
}

/** The route's name, or its place when it has none (the default route before routes files). */
export function routeLabel(route: ResourceObject, index: number): string {
  return typeof route.name === "string" && route.name !== "" ? route.name : `#${index}`;
}

/**
 * Switches, on each route with a slot of a filter and where that filter runs, the filter off and
 * its slot on. Called on the rendered route configuration, so it follows whatever scope rendering
 * decided; returns a new object (the input is not modified).
 */
export function withRouteConfigurations(
  routeConfig: ResourceObject, filters: readonly FilterResourceSpec[], hcmDisabled: ReadonlySet<string> = new Set(),
): ResourceObject {
  const slotsByRoute = new Map<string, { filter: string; slot: string }[]>();
  for (const f of filters) {
    for (const s of routeSlots(f)) slotsByRoute.set(s.route, [...(slotsByRoute.get(s.route) ?? []), { filter: f.name, slot: s.name }]);
  }
  if (slotsByRoute.size === 0) return routeConfig;
  const virtualHosts = (routeConfig.virtual_hosts as ResourceObject[] | undefined) ?? [];
  return {
    ...routeConfig,
    virtual_hosts: virtualHosts.map((vh) => ({
      ...vh,
      routes: ((vh.routes as ResourceObject[] | undefined) ?? []).map((route) => {
        const slots = typeof route.name === "string" ? slotsByRoute.get(route.name) : undefined;
        if (!slots) return route;
        const perFilter: Record<string, unknown> = { ...((route.typed_per_filter_config as PerFilter) ?? {}) };
        let changed = false;
        for (const { filter, slot } of slots) {
          if (!runsOnRoute(filter, vh, route, hcmDisabled.has(filter))) continue;
          perFilter[filter] = { "@type": FILTER_CONFIG, disabled: true };
          // An empty Any: "on", with the slot's own (ECDS) config. disabled:false alone is rejected.
          perFilter[slot] = { "@type": FILTER_CONFIG, config: {} };
          changed = true;
        }
        return changed ? { ...route, typed_per_filter_config: sortedKeys(perFilter) } : route;
      }),
    })),
  };
}

/** Same keys in name order: rendering must not depend on insertion order (versions are content hashes). */
function sortedKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** HCM filters a listener marks `disabled: true` (off unless a route turns them on). */
export function hcmDisabledNames(listener: ResourceObject): Set<string> {
  const out = new Set<string>();
  for (const { http_filters: filters } of hcmConfigs(listener)) {
    for (const f of filters ?? []) if (f.disabled === true && typeof f.name === "string") out.add(f.name);
  }
  return out;
}

/** The HCM filter names of a listener, in chain order. */
export function hcmFilterNames(listener: ResourceObject): string[] {
  return hcmConfigs(listener).flatMap((c) => (c.http_filters ?? []).map((f) => String(f.name)));
}

interface HcmShape {
  http_filters?: ResourceObject[];
}

function hcmConfigs(listener: ResourceObject): HcmShape[] {
  const chains = (listener.filter_chains as { filters?: { typed_config?: HcmShape & { "@type"?: string } }[] }[] | undefined) ?? [];
  return chains
    .flatMap((c) => (c.filters ?? []).map((f) => f.typed_config ?? {}))
    .filter((t) => String(t["@type"] ?? "").endsWith("HttpConnectionManager"));
}
