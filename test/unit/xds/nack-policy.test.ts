import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderMetrics } from "../../../controlplane/http/metrics.ts";
import { FetchTracker } from "../../../controlplane/registry/fetch-tracker.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { DEFAULT_GROUP, SnapshotCache } from "../../../controlplane/xds/cache.ts";
import { ClientRegistry } from "../../../controlplane/xds/client-status.ts";
import { DeltaSession } from "../../../controlplane/xds/delta-session.ts";
import type { DeltaDiscoveryResponse, DiscoveryResponse } from "../../../controlplane/xds/discovery-types.ts";
import { buildResources, type FilterResourceSpec } from "../../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../../controlplane/xds/snapshot.ts";
import { SotwSession } from "../../../controlplane/xds/sotw-session.ts";
import { LISTENER, PUSH_ORDER, ROUTE } from "../../../controlplane/xds/type-urls.ts";

function snapshotOf(filters: FilterResourceSpec[], listenerPort = 10000): Snapshot {
  return encodeSnapshot(buildResources({
    listener: { address: "127.0.0.1", port: listenerPort },
    upstream: { host: "127.0.0.1", port: 8080 },
    moduleServer: { host: "127.0.0.1", port: 18080 },
    filters,
  }));
}
const f = (enabled: boolean): FilterResourceSpec => ({ name: "f", sha256: "a".repeat(64), rootId: "f", enabled });
const silent = { info: () => undefined, warn: () => undefined };

function sotw(cache: SnapshotCache, registry: ClientRegistry, id: number, cluster = "wasm-xds") {
  const sent: DiscoveryResponse[] = [];
  const session: SotwSession = new SotwSession(id, "test", {
    registry, fetches: new FetchTracker(), log: silent, rejections: cache.rejectionsFor(() => cache.groupOf(node)),
    snapshot: () => cache.getFor(node), send: (r) => sent.push(r), types: PUSH_ORDER, source: "ads",
  });
  const node = { id: `envoy-${id}`, cluster };
  cache.watch(() => session.handleSnapshot(cache.getFor(node)!));
  return { session, sent, node };
}

describe("NACK policy and node groups", () => {
  it("a version one Envoy rejected is never handed to an Envoy that connects later", async () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    const v1 = snapshotOf([f(true)], 10000);
    cache.set(v1);
    const a = sotw(cache, registry, 1);
    const [first] = (a.session.handleRequest({ node: a.node, type_url: LISTENER }), a.sent);
    a.session.handleRequest({ type_url: LISTENER, version_info: first!.version_info, response_nonce: first!.nonce });

    const v2 = snapshotOf([f(true)], 10001); // a listener change Envoy A rejects
    cache.set(v2);
    const bad = a.sent.at(-1)!;
    assert.equal(bad.version_info, v2.types.get(LISTENER)!.version);
    a.session.handleRequest({ type_url: LISTENER, version_info: first!.version_info, response_nonce: bad.nonce, error_detail: { message: "cannot bind" } });
    assert.equal(registry.nackCount, 1);
    assert.deepEqual(registry.list()[0]!.types.get(LISTENER)!.lastNack?.resources, ["wasm_listener"]);
    assert.match(await renderMetrics(new FilterRegistry(), registry), /^wasmxds_xds_nacks_total\{type="LDS"\} 1$/m, "the NACK metric counts it");

    const b = sotw(cache, registry, 2);
    b.session.handleRequest({ node: b.node, type_url: LISTENER });
    const got = b.sent[0]!;
    assert.notEqual(got.version_info, v2.types.get(LISTENER)!.version, "not the rejected version");
    assert.deepEqual(got.resources[0]!.value, v1.types.get(LISTENER)!.resources.get("wasm_listener")!.anyFor().value, "the newest accepted one");

    // The next version goes to everyone.
    const v3 = snapshotOf([f(true)], 10002);
    cache.set(v3);
    assert.equal(a.sent.at(-1)!.version_info, v3.types.get(LISTENER)!.version);
    assert.equal(b.sent.at(-1)!.version_info, v3.types.get(LISTENER)!.version);
  });

  it("Delta: the rejected resources are named in the NACK record and skipped for new streams", () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    cache.set(snapshotOf([f(true)]));
    const sentA: DeltaDiscoveryResponse[] = [];
    const deps = (sent: DeltaDiscoveryResponse[]) => ({ registry, fetches: new FetchTracker(), log: silent, rejections: cache.rejectionsFor(() => DEFAULT_GROUP), snapshot: () => cache.get(), send: (r: DeltaDiscoveryResponse) => sent.push(r), types: PUSH_ORDER, source: "ads" as const });
    const a = new DeltaSession(1, "a", deps(sentA));
    a.handleRequest({ node: { id: "a", cluster: "c" }, type_url: ROUTE, resource_names_subscribe: ["local_route"] });
    a.handleRequest({ type_url: ROUTE, response_nonce: sentA[0]!.nonce });
    const good = sentA[0]!.resources[0]!.version;
    cache.set(snapshotOf([f(false)]));
    a.handleSnapshot(cache.get()!, [ROUTE]);
    const bad = sentA.at(-1)!;
    a.handleRequest({ type_url: ROUTE, response_nonce: bad.nonce, error_detail: { message: "bad route" } });
    assert.deepEqual(registry.list()[0]!.types.get(ROUTE)!.lastNack?.resources, ["local_route"]);

    const sentB: DeltaDiscoveryResponse[] = [];
    const b = new DeltaSession(2, "b", deps(sentB));
    b.handleRequest({ node: { id: "b", cluster: "c" }, type_url: ROUTE, resource_names_subscribe: ["local_route"] });
    assert.equal(sentB[0]!.resources[0]!.version, good, "the newest version nobody rejected");
    // A stream that already holds it is not sent anything more.
    b.handleRequest({ type_url: ROUTE, response_nonce: sentB[0]!.nonce });
    assert.equal(sentB.length, 1);
  });

  it("snapshots are chosen per node through the group policy, built on first use", () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    let edgeFilterOn = false;
    cache.setPolicy({
      groupOf: (node) => (node.cluster === "edge" || node.id === "special" ? "edge" : DEFAULT_GROUP),
      build: (group) => snapshotOf([f(group === "edge" ? edgeFilterOn : true)]),
    });
    cache.set(snapshotOf([f(true)]));
    const edge = sotw(cache, registry, 1, "edge");
    const other = sotw(cache, registry, 2, "internal");
    for (const s of [edge, other]) {
      s.session.handleRequest({ node: s.node, type_url: ROUTE, resource_names: ["local_route"] });
      s.session.handleRequest({ type_url: ROUTE, resource_names: ["local_route"], version_info: s.sent[0]!.version_info, response_nonce: s.sent[0]!.nonce });
    }
    assert.notEqual(edge.sent[0]!.version_info, other.sent[0]!.version_info, "the edge group runs a different filter set");
    assert.deepEqual(cache.groups().sort(), [DEFAULT_GROUP, "edge"]);
    assert.equal(cache.groupOf({ id: "special", cluster: "x" }), "edge", "a node can be singled out by id");

    // Only the streams whose own snapshot changed are sent anything.
    edgeFilterOn = true;
    cache.publish(new Map([[DEFAULT_GROUP, snapshotOf([f(true)])], ["edge", snapshotOf([f(true)])]]));
    assert.equal(edge.sent.length, 2, "the edge group's route changed");
    assert.equal(other.sent.length, 1, "the default group's did not");
    assert.equal(edge.sent[1]!.version_info, other.sent[0]!.version_info, "both now run the same set");
  });
  it("a NACK of a version no Envoy ever accepted does not empty the response of a later Envoy", () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    const v1 = snapshotOf([f(true)]);
    cache.set(v1);
    const foreign = sotw(cache, registry, 1);
    foreign.session.handleRequest({ node: foreign.node, type_url: LISTENER });
    const first = foreign.sent[0]!;
    foreign.session.handleRequest({ type_url: LISTENER, response_nonce: first.nonce, error_detail: { message: "no" } });
    assert.equal(registry.nackCount, 1, "the NACK is recorded");

    const later = sotw(cache, registry, 2);
    later.session.handleRequest({ node: later.node, type_url: LISTENER });
    const got = later.sent[0]!;
    assert.equal(got.resources.length, 1, "the listener is sent, not an empty list (SotW: empty = delete)");
    assert.equal(got.version_info, v1.types.get(LISTENER)!.version, "the current version: nothing better is known");
  });

  it("the last accepted version outlives any number of rejected ones", () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    const good = snapshotOf([f(true)], 20000);
    cache.set(good);
    const a = sotw(cache, registry, 1);
    a.session.handleRequest({ node: a.node, type_url: LISTENER });
    a.session.handleRequest({ type_url: LISTENER, version_info: a.sent[0]!.version_info, response_nonce: a.sent[0]!.nonce });
    // Twice the history each resource keeps: every one of them rejected by A.
    for (let port = 20001; port <= 20016; port++) {
      cache.set(snapshotOf([f(true)], port));
      const bad = a.sent.at(-1)!;
      assert.equal(bad.version_info, cache.get()!.types.get(LISTENER)!.version);
      a.session.handleRequest({ type_url: LISTENER, version_info: a.sent[0]!.version_info, response_nonce: bad.nonce, error_detail: { message: `cannot bind ${port}` } });
    }
    const b = sotw(cache, registry, 2);
    b.session.handleRequest({ node: b.node, type_url: LISTENER });
    const got = b.sent[0]!;
    assert.equal(got.resources.length, 1);
    assert.deepEqual(got.resources[0]!.value, good.types.get(LISTENER)!.resources.get("wasm_listener")!.anyFor().value, "the version A accepted");
  });

  it("a NACK changes nothing for Envoys of another node group", () => {
    const cache = new SnapshotCache();
    const registry = new ClientRegistry();
    let port = 30000;
    cache.setPolicy({ groupOf: (node) => (node.cluster === "edge" ? "edge" : DEFAULT_GROUP), build: () => snapshotOf([f(true)], port) });
    cache.set(snapshotOf([f(true)], port));
    const edge = sotw(cache, registry, 1, "edge");
    const other = sotw(cache, registry, 2, "internal");
    for (const s of [edge, other]) {
      s.session.handleRequest({ node: s.node, type_url: LISTENER });
      s.session.handleRequest({ type_url: LISTENER, version_info: s.sent[0]!.version_info, response_nonce: s.sent[0]!.nonce });
    }
    port = 30001;
    cache.publish(new Map([[DEFAULT_GROUP, snapshotOf([f(true)], port)], ["edge", snapshotOf([f(true)], port)]]));
    const next = cache.get()!.types.get(LISTENER)!.version;
    const bad = edge.sent.at(-1)!;
    edge.session.handleRequest({ type_url: LISTENER, version_info: edge.sent[0]!.version_info, response_nonce: bad.nonce, error_detail: { message: "edge says no" } });

    const laterEdge = sotw(cache, registry, 3, "edge");
    laterEdge.session.handleRequest({ node: laterEdge.node, type_url: LISTENER });
    assert.notEqual(laterEdge.sent[0]!.version_info, next, "the edge group falls back to what an edge Envoy accepted");
    const laterOther = sotw(cache, registry, 4, "internal");
    laterOther.session.handleRequest({ node: laterOther.node, type_url: LISTENER });
    assert.equal(laterOther.sent[0]!.version_info, next, "another group gets the current version");
  });
});
