// Filters per route and per host (issue 15 part 2): targets' parsing and precedence, node
// grouping left to clusters/nodes, per-route configuration slots, and per-Envoy placement.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { parseManifest } from "../../../controlplane/compile/manifest.ts";
import { effectiveFilters } from "../../../controlplane/registry/effective.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { normalizeTargets, OperatorState, parseState } from "../../../controlplane/state/operator-state.ts";
import { SnapshotCache } from "../../../controlplane/xds/cache.ts";
import { decodeMessage, encodeMessage, type ResourceObject } from "../../../controlplane/xds/codec.ts";
import { knownRoutes, placementOf } from "../../../controlplane/xds/filter-placement.ts";
import { resourceInputs } from "../../../controlplane/xds/inputs.ts";
import { SnapshotPublisher } from "../../../controlplane/xds/publisher.ts";
import { buildResources, isVariantResource, type ResourceInputs, type VariantResource } from "../../../controlplane/xds/resources.ts";
import { runsOnRoute, withRouteConfigurations } from "../../../controlplane/xds/route-configurations.ts";
import { EXTENSION_CONFIG, LISTENER, ROUTE } from "../../../controlplane/xds/type-urls.ts";

const SHA_A = "a".repeat(64);
const plain = (r: ResourceObject | VariantResource | undefined): ResourceObject => {
  assert.ok(r, "resource exists");
  return isVariantResource(r) ? r.canonical : r;
};
const FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig";
const NET = {
  listener: { address: "127.0.0.1", port: 10000 }, upstream: { host: "127.0.0.1", port: 8080 }, moduleServer: { host: "127.0.0.1", port: 18080 },
};
const WASM = new Uint8Array([0, 97, 115, 109]);

function inputs(filters: ResourceInputs["filters"]): ResourceInputs {
  return { ...NET, filters };
}

/** Round-trips a resource through Envoy's protos, as Envoy (and the placement code) would see it. */
function onTheWire(typeUrl: string, r: ResourceObject | VariantResource | undefined): ResourceObject {
  return decodeMessage(typeUrl, encodeMessage(typeUrl, plain(r)));
}

function httpFilters(listener: ResourceObject): ResourceObject[] {
  const chain = (listener.filter_chains as { filters: { typed_config: { http_filters: ResourceObject[] } }[] }[])[0]!;
  return chain.filters[0]!.typed_config.http_filters;
}

describe("targets: parsing and precedence", () => {
  test("stored targets from before routes/hosts read as empty routes and hosts; lists are sorted and deduplicated", () => {
    const state = parseState({
      filters: { a: { targets: { clusters: ["edge"], nodes: [] } }, b: { targets: { routes: ["z", "api", "z"], hosts: ["b.example"] } } },
    });
    assert.deepEqual(state.filters.a!.targets, { clusters: ["edge"], nodes: [], routes: [], hosts: [] });
    assert.deepEqual(state.filters.b!.targets, { clusters: [], nodes: [], routes: ["api", "z"], hosts: ["b.example"] });
  });

  test("route configurations survive a save and load; non-string entries are dropped", () => {
    const state = parseState({ filters: { a: { routeConfigurations: { api: "x", bad: 3 } } } });
    assert.deepEqual(state.filters.a!.routeConfigurations, { api: "x" });
  });

  test("filter.json targets: the four lists, anything else is a clear error", () => {
    const ok = parseManifest(JSON.stringify({ targets: { routes: ["api"] } }));
    assert.deepEqual(ok, { ok: true, manifest: { targets: { routes: ["api"] } } });
    const typo = parseManifest(JSON.stringify({ targets: { route: ["api"] } }));
    assert.equal(typo.ok, false);
    assert.match(!typo.ok ? typo.error : "", /unknown key "route"/);
    const notList = parseManifest(JSON.stringify({ targets: { hosts: "b.example" } }));
    assert.match(!notList.ok ? notList.error : "", /"hosts" must be a list of non-empty strings/);
  });

  describe("effective targets", () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-targets-"));
    });
    after(async () => rm(dir, { recursive: true, force: true }));

    test("filter.json's targets apply until an operator chooses; an explicit everywhere wins; DELETE goes back", async () => {
      const registry = new FilterRegistry();
      registry.buildSucceeded("f", WASM, { sha256: SHA_A, rootId: "f", buildMs: 1 }, { targets: normalizeTargets({ routes: ["api"] }) });
      const state = new OperatorState(path.join(dir, "state.json"));
      const one = () => effectiveFilters(registry, state)[0]!;
      assert.deepEqual(one().targets?.routes, ["api"]);
      assert.equal(one().targetsFrom, "manifest");
      await state.update("f", { targets: normalizeTargets({ hosts: ["b.example"] }) });
      assert.deepEqual([one().targets?.routes, one().targets?.hosts, one().targetsFrom], [[], ["b.example"], "operator"]);
      await state.update("f", { targets: normalizeTargets({}) });
      assert.equal(one().targets, undefined, "all empty: everywhere, over the manifest's");
      await state.update("f", { targets: undefined });
      assert.deepEqual(one().targets?.routes, ["api"]);
    });

    test("routes/hosts targets never group Envoys: one snapshot for every node; clusters/nodes still do", async () => {
      const registry = new FilterRegistry();
      registry.buildSucceeded("f", WASM, { sha256: SHA_A, rootId: "f", buildMs: 1 }, {});
      const state = new OperatorState(path.join(dir, "state-group.json"));
      const cache = new SnapshotCache();
      new SnapshotPublisher(NET, registry, state, cache).start();
      const groupOf = (id: string) => cache.groupOf({ id, cluster: "edge" });
      await state.update("f", { targets: normalizeTargets({ routes: ["api"], hosts: ["b.example"] }) });
      assert.equal(groupOf("n1"), groupOf("n2"));
      assert.equal(groupOf("n1"), "", "the default group: the filter is in every listener");
      await state.update("f", { targets: normalizeTargets({ routes: ["api"], nodes: ["n1"] }) });
      assert.notEqual(groupOf("n1"), groupOf("n2"), "node targeting still groups");
    });
  });
});

describe("per-route configuration slots", () => {
  const filters = [
    { name: "f", sha256: SHA_A, rootId: "f", enabled: true, configuration: "main", routeConfigurations: { default: "other" } },
  ];

  test("a slot follows its filter in the chain, off by default; its ECDS resource shares the filter's VM", () => {
    const set = buildResources(inputs(filters));
    const names = httpFilters(plain(set.get(LISTENER)!.values().next().value)).map((f) => [f.name, f.disabled ?? false]);
    assert.deepEqual(names, [["f", false], ["f@default", true], ["envoy.filters.http.router", false]]);
    const config = (name: string): ResourceObject =>
      (plain(set.get(EXTENSION_CONFIG)!.get(name)).typed_config as ResourceObject).config as ResourceObject;
    const main = config("f");
    const slot = config("f@default");
    assert.deepEqual(slot.vm_config, main.vm_config, "same vm_id, code and vm configuration: one VM");
    assert.equal(slot.root_id, main.root_id);
    assert.equal(slot.name, "f@default");
    assert.equal((slot.configuration as ResourceObject).value, "other");
    assert.equal((main.configuration as ResourceObject).value, "main");
  });

  test("on the slot's route the filter is off and the slot on (an empty Any on the wire); elsewhere untouched", () => {
    const set = buildResources(inputs(filters));
    const rc = onTheWire(ROUTE, set.get(ROUTE)!.values().next().value);
    const vh = (rc.virtual_hosts as ResourceObject[])[0]!;
    const route = (vh.routes as ResourceObject[])[0]!;
    const perFilter = route.typed_per_filter_config as Record<string, ResourceObject>;
    assert.deepEqual(perFilter.f, { "@type": FILTER_CONFIG, disabled: true });
    assert.ok(perFilter["f@default"]?.config !== undefined, "the slot's FilterConfig carries config (an empty Any), which Envoy requires");
    assert.equal(runsOnRoute("f", vh, route, false), false);
    assert.equal(runsOnRoute("f@default", vh, route, true), true);
  });

  test("a slot is not switched on where its filter does not run (disabled, or out of scope)", () => {
    const off = buildResources(inputs([{ ...filters[0]!, enabled: false }]));
    const rc = plain(off.get(ROUTE)!.values().next().value);
    const vh = (rc.virtual_hosts as ResourceObject[])[0]!;
    const route = (vh.routes as ResourceObject[])[0]!;
    assert.equal(runsOnRoute("f@default", vh, route, true), false);
    const scoped: ResourceObject = {
      name: "r",
      virtual_hosts: [{
        name: "v", domains: ["*"], routes: [{ name: "default", typed_per_filter_config: { f: { "@type": FILTER_CONFIG, disabled: true } } }],
      }],
    };
    assert.deepEqual(withRouteConfigurations(scoped, filters), scoped);
  });

  test("a route configuration for a route the table does not have changes no route", () => {
    const set = buildResources(inputs([{ ...filters[0]!, routeConfigurations: { gone: "x" } }]));
    const route = ((plain(set.get(ROUTE)!.values().next().value).virtual_hosts as ResourceObject[])[0]!.routes as ResourceObject[])[0]!;
    assert.equal(route.typed_per_filter_config, undefined);
  });
});

describe("placement (where a filter runs, read from the resources an Envoy ACKed)", () => {
  const two: ResourceObject = {
    name: "local_route",
    virtual_hosts: [
      {
        name: "a", domains: ["a.example"],
        routes: [
          {
            name: "api",
            typed_per_filter_config: { f: { "@type": FILTER_CONFIG, disabled: true }, "f@api": { "@type": FILTER_CONFIG, config: {} } },
          },
          { name: "web" },
        ],
      },
      {
        name: "b", domains: ["b.example"], typed_per_filter_config: { f: { "@type": FILTER_CONFIG, disabled: true } },
        routes: [{ name: "b-all" }],
      },
    ],
  };
  const listener = (withSlot: boolean): ResourceObject => ({
    name: "l",
    filter_chains: [{
      filters: [{
        name: "hcm",
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
          http_filters: [{ name: "f" }, ...(withSlot ? [{ name: "f@api", disabled: true }] : []), { name: "envoy.filters.http.router" }],
        },
      }],
    }],
  });

  test("lists each route with which configuration runs there; a virtual-host switch covers its routes", () => {
    const p = placementOf("f", [listener(true)], [two]);
    assert.equal(p.inChain, true);
    assert.deepEqual(p.routes.map((r) => [r.host, r.route, r.configuration]), [["a", "api", "route"], ["a", "web", "filter"]]);
  });

  test("not in the chain (node targeting): nowhere", () => {
    assert.deepEqual(placementOf("g", [listener(false)], [two]), { inChain: false, routes: [] });
  });

  test("known routes: route names, virtual host names and their domains", () => {
    const known = knownRoutes([two]);
    assert.deepEqual([...known.routes].sort(), ["api", "b-all", "web"]);
    assert.ok(known.hasHost("b") && known.hasHost("B.example") && !known.hasHost("c.example"));
    assert.match(known.describe(), /routes: api, b-all, web; virtual hosts: a \(a.example\); b \(b.example\)/);
  });

  test("inputs carry scope only for routes/hosts targets", () => {
    const base = { name: "f", enabled: true, order: 1, status: "ok" as const, failPolicy: "reload" as const, sha256: SHA_A, rootId: "f" };
    const nodesOnly = resourceInputs(NET, [{ ...base, targets: normalizeTargets({ nodes: ["n"] }) }]);
    assert.equal(nodesOnly.filters[0]!.scope, undefined);
    const scoped = resourceInputs(NET, [{ ...base, targets: normalizeTargets({ routes: ["api"], hosts: ["b.example"] }) }]);
    assert.deepEqual(scoped.filters[0]!.scope, { routes: ["api"], hosts: ["b.example"] });
  });
});
