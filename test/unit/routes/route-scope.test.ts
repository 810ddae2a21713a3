// Which filters run on which routes: the rendered RouteConfiguration (through Envoy's protos)
// read with Envoy's rule for per-filter configs: the most specific one wins (route, then virtual
// host, then route configuration); `disabled: true` turns the filter off; no entry: it runs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeMessage, encodeMessage, type ResourceObject } from "../../../controlplane/xds/codec.ts";
import { buildResources, isVariantResource, routeConfiguration, type FilterResourceSpec } from "../../../controlplane/xds/resources.ts";
import { ROUTE } from "../../../controlplane/xds/type-urls.ts";
import type { RouteTable } from "../../../controlplane/routes/route-table.ts";

const SHA = "a".repeat(64);
const TABLE: RouteTable = {
  upstreams: [{ name: "u", endpoints: [{ host: "127.0.0.1", port: 1 }], connectTimeoutMs: 1000 }],
  virtualHosts: [
    {
      name: "main", domains: ["*"],
      routes: [{ name: "api", match: { prefix: "/api" }, upstream: "u" }, { name: "rest", match: { prefix: "/" }, upstream: "u" }],
    },
    {
      name: "b-host", domains: ["b.example"],
      routes: [{ name: "b-all", match: { prefix: "/" }, upstream: "u" }, { name: "b-admin", match: { path: "/admin" }, upstream: "u" }],
    },
    { name: "c", domains: ["c.example", "C2.example"], routes: [{ name: "c-all", match: { prefix: "/" }, upstream: "u" }] },
  ],
};
const ALL_ROUTES = ["api", "rest", "b-all", "b-admin", "c-all"];

const filter = (name: string, extra: Partial<FilterResourceSpec> = {}): FilterResourceSpec =>
  ({ name, sha256: SHA, rootId: name, enabled: true, ...extra });

const FILTERS: FilterResourceSpec[] = [
  filter("plain"),
  filter("off", { enabled: false }),
  filter("routes-only", { scope: { routes: ["api", "b-admin"], hosts: [] } }),
  filter("host-by-domain", { scope: { routes: [], hosts: ["b.example"] } }),
  filter("host-by-name", { scope: { routes: [], hosts: ["c"] } }),
  filter("host-domain-case", { scope: { routes: [], hosts: ["c2.EXAMPLE"] } }),
  filter("mixed", { scope: { routes: ["api"], hosts: ["c"] } }),
  filter("off-and-scoped", { enabled: false, scope: { routes: ["api"], hosts: ["b.example"] } }),
  filter("empty-scope", { scope: { routes: [], hosts: [] } }),
  filter("unknown-names", { scope: { routes: ["nope"], hosts: ["nope.example"] } }),
];

const WANT: Record<string, string[]> = {
  "plain": ALL_ROUTES,
  "off": [],
  "routes-only": ["api", "b-admin"],
  "host-by-domain": ["b-all", "b-admin"],
  "host-by-name": ["c-all"],
  "host-domain-case": ["c-all"],
  "mixed": ["api", "c-all"],
  "off-and-scoped": [],
  "empty-scope": [],
  "unknown-names": [],
};

type Tpfc = Record<string, { disabled?: boolean; config?: unknown }> | undefined;

/** Envoy's reading: the most specific entry for the filter decides; none means on (the HCM filter is not disabled). */
function runs(rc: ResourceObject, filterName: string): string[] {
  const on: string[] = [];
  const rcLevel = rc.typed_per_filter_config as Tpfc;
  for (const vh of rc.virtual_hosts as ResourceObject[]) {
    for (const r of vh.routes as ResourceObject[]) {
      const entry = (r.typed_per_filter_config as Tpfc)?.[filterName]
        ?? (vh.typed_per_filter_config as Tpfc)?.[filterName]
        ?? rcLevel?.[filterName];
      if (entry?.disabled !== true) on.push(r.name as string);
    }
  }
  return on;
}

const decoded = (filters: readonly FilterResourceSpec[]): ResourceObject =>
  decodeMessage(ROUTE, encodeMessage(ROUTE, routeConfiguration(TABLE, filters)));

test("each filter runs exactly on the routes its scope names, directly or through their virtual host", () => {
  const rc = decoded(FILTERS);
  for (const f of FILTERS) assert.deepEqual(runs(rc, f.name), WANT[f.name], f.name);
});

test("only `disabled: true` entries are written, so an operator's disable is never undone by a scope", () => {
  const rc = decoded(FILTERS);
  const hosts = rc.virtual_hosts as ResourceObject[];
  const entries = [rc, ...hosts, ...hosts.flatMap((v) => v.routes as ResourceObject[])]
    .flatMap((x) => Object.values((x.typed_per_filter_config ?? {}) as Record<string, ResourceObject>));
  assert.ok(entries.length > 5, `${entries.length} entries`);
  for (const e of entries) assert.deepEqual(e, { "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", disabled: true });
  // A scope whose virtual host is out of scope entirely is one vhost-level entry, not one per route.
  const main = (decoded([filter("host-by-name", { scope: { routes: [], hosts: ["c"] } })]).virtual_hosts as ResourceObject[])[0]!;
  assert.deepEqual(Object.keys(main.typed_per_filter_config as object), ["host-by-name"]);
  assert.equal((main.routes as ResourceObject[]).some((r) => r.typed_per_filter_config !== undefined), false);
});

test("rendering is deterministic: filter order does not change the bytes, and keys are sorted", () => {
  const a = encodeMessage(ROUTE, routeConfiguration(TABLE, FILTERS));
  const b = encodeMessage(ROUTE, routeConfiguration(TABLE, [...FILTERS].reverse()));
  assert.deepEqual(Buffer.from(a), Buffer.from(b));
  const main = (routeConfiguration(TABLE, FILTERS).virtual_hosts as ResourceObject[])[0]!;
  const keys = Object.keys(main.typed_per_filter_config as object);
  assert.deepEqual(keys, [...keys].sort());
});

test("without a routes file: one catch-all route to `upstream`, a disabled filter off on its virtual host", () => {
  const set = buildResources({
    listener: { address: "127.0.0.1", port: 1 }, upstream: { host: "127.0.0.1", port: 2 }, moduleServer: { host: "127.0.0.1", port: 3 },
    filters: [filter("on"), filter("off", { enabled: false })],
  });
  const r = set.get(ROUTE)!.get("local_route")!;
  const rc = decodeMessage(ROUTE, encodeMessage(ROUTE, isVariantResource(r) ? r.canonical : r));
  const [vh] = rc.virtual_hosts as ResourceObject[];
  assert.equal(vh!.name, "all");
  assert.deepEqual(vh!.domains, ["*"]);
  const routes = (vh!.routes as ResourceObject[]).map((x) => [x.name, x.match, (x.route as ResourceObject).cluster]);
  assert.deepEqual(routes, [["default", { prefix: "/" }, "upstream"]]);
  assert.deepEqual(runs(rc, "on"), ["default"]);
  assert.deepEqual(runs(rc, "off"), []);
});
