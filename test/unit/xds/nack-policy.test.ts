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
});
