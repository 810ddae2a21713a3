// Incremental (Delta) xDS over ADS, against a real in-process server and a raw gRPC client.
// As in the SotW tests, "nothing was sent" is proven by ordering: a follow-up request that must
// be answered, whose answer has to be the very next response.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../controlplane/xds/type-urls.ts";
import type { DeltaDiscoveryResponse } from "../../controlplane/xds/discovery-types.ts";
import {
  deltaAck,
  deltaNack,
  filterSpec,
  nackOnCacheMiss,
  nodeOf,
  snapshotOf,
  startXds,
  type DeltaStream,
  type XdsHarness,
} from "../support/xds-client.ts";

const names = (r: DeltaDiscoveryResponse): string[] => r.resources.map((x) => x.name);

/** Each resource carries the snapshot's per-resource version, the response the type version. */
function assertSnapshotVersions(h: XdsHarness, r: DeltaDiscoveryResponse): void {
  const t = h.cache.get()!.types.get(r.type_url)!;
  assert.equal(r.system_version_info, t.version, "system_version_info is the type version");
  for (const x of r.resources) {
    assert.equal(x.version, t.resources.get(x.name)!.version, `${x.name}: the snapshot's resource version`);
    assert.equal(x.resource.type_url, r.type_url);
  }
}

function currentVersions(h: XdsHarness, typeUrl: string): Record<string, string> {
  return Object.fromEntries([...h.cache.get()!.types.get(typeUrl)!.resources.values()].map((r) => [r.name, r.version]));
}

/**
 * The next response of `typeUrl` after a re-subscription to `name`. The spec lets a server
 * confirm the preceding unsubscription (a response naming only `name` in removed_resources);
 * anything else before the re-sent resource fails.
 */
async function nextAfterResubscribe(d: DeltaStream, typeUrl: string, name: string): Promise<DeltaDiscoveryResponse> {
  let r = await d.nextOf(typeUrl, `the re-subscribed ${name}`);
  if ((r.resources ?? []).length === 0 && (r.removed_resources ?? []).join() === name) {
    d.send(deltaAck(r));
    r = await d.nextOf(typeUrl, `the re-subscribed ${name}`);
  }
  return r;
}

/** The next response of `typeUrl`, ACKed. */
async function receiveAndAck(d: DeltaStream, typeUrl: string, what?: string): Promise<DeltaDiscoveryResponse> {
  const r = await d.nextOf(typeUrl, what);
  d.send(deltaAck(r));
  return r;
}

describe("Delta over ADS", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  // Each test closes its clients and the server drops their streams before the next one starts.
  afterEach(() => h.reset());
  after(() => h.close());

  it("wildcard CDS by an empty first subscription sends every cluster with the snapshot's versions", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("wild-empty"), type_url: CLUSTER });
    const r = await receiveAndAck(d, CLUSTER);
    assert.deepEqual(names(r).sort(), ["upstream", "wasm_modules"]);
    assert.deepEqual(r.removed_resources ?? [], []);
    assertSnapshotVersions(h, r);
    await h.typeStatus("wild-empty", CLUSTER, (x) => x.ackedVersion === r.system_version_info, "the CDS ACK");
  });

  it("wildcard CDS by \"*\" sends every cluster with the snapshot's versions", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("wild-star"), type_url: CLUSTER, resource_names_subscribe: ["*"] });
    const r = await receiveAndAck(d, CLUSTER);
    assert.deepEqual(names(r).sort(), ["upstream", "wasm_modules"]);
    assertSnapshotVersions(h, r);
    // A changed cluster comes alone, with its new version.
    h.cache.set(snapshotOf({ moduleServer: { host: "modules.internal", port: 18080 } }));
    const changed = await d.nextOf(CLUSTER, "the changed cluster");
    assert.deepEqual(names(changed), ["wasm_modules"]);
    assertSnapshotVersions(h, changed);
  });

  it("initial_resource_versions all current: nothing is sent and the registry shows the type ACKed", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("irv-current"), type_url: CLUSTER, resource_names_subscribe: ["*"], initial_resource_versions: currentVersions(h, CLUSTER) });
    d.send({ type_url: LISTENER, resource_names_subscribe: ["*"] });
    await d.nextOf(LISTENER, "LDS, with no CDS before it");
    const st = await h.typeStatus("irv-current", CLUSTER, (x) => x.ackedVersion !== undefined, "CDS to count as in sync");
    assert.equal(st.ackedVersion, h.cache.get()!.types.get(CLUSTER)!.version);
  });

  it("initial_resource_versions with one stale resource: only that one is sent", async () => {
    const d = h.connect().delta();
    const held = { ...currentVersions(h, CLUSTER), upstream: "0000000000000000" };
    d.send({ node: nodeOf("irv-stale"), type_url: CLUSTER, initial_resource_versions: held });
    const r = await receiveAndAck(d, CLUSTER);
    assert.deepEqual(names(r), ["upstream"]);
    assertSnapshotVersions(h, r);
    await h.typeStatus("irv-stale", CLUSTER, (x) => x.ackedVersion === r.system_version_info, "the CDS ACK");
  });

  it("RDS: subscribe, unsubscribe, and a re-subscription sends the route again", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("rds-sub"), type_url: ROUTE, resource_names_subscribe: ["local_route"] });
    const first = await receiveAndAck(d, ROUTE);
    assert.deepEqual(names(first), ["local_route"]);
    assertSnapshotVersions(h, first);

    d.send({ type_url: ROUTE, resource_names_unsubscribe: ["local_route"] });
    await h.typeStatus("rds-sub", ROUTE, (x) => x.resourceNames.length === 0, "the unsubscription");
    d.send({ type_url: ROUTE, resource_names_subscribe: ["local_route"] });
    const again = await nextAfterResubscribe(d, ROUTE, "local_route");
    assert.deepEqual(names(again), ["local_route"]);
    assert.equal(again.resources[0]!.version, first.resources[0]!.version);
  });

  it("ECDS: subscriptions by name send only the new names; a re-subscription sends the filter again, as warming", async () => {
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "a"), filterSpec("f2", "b"), filterSpec("f3", "c")] }));
    const d = h.connect().delta();
    d.send({ node: nodeOf("ecds-sub"), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    const r1 = await receiveAndAck(d, EXTENSION_CONFIG);
    assert.deepEqual(names(r1), ["f1"]);
    assert.equal(nackOnCacheMiss(r1.resources[0]!.resource), false, "warming");

    d.send({ type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f2"] });
    const r2 = await receiveAndAck(d, EXTENSION_CONFIG, "the added filter");
    assert.deepEqual(names(r2), ["f2"], "only the newly subscribed filter");
    assertSnapshotVersions(h, r2);

    d.send({ type_url: EXTENSION_CONFIG, resource_names_unsubscribe: ["f1"] });
    await h.typeStatus("ecds-sub", EXTENSION_CONFIG, (x) => x.resourceNames.join() === "f2", "the unsubscription");
    d.send({ type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    const again = await nextAfterResubscribe(d, EXTENSION_CONFIG, "f1");
    assert.deepEqual(names(again), ["f1"]);
    assert.equal(again.resources[0]!.version, r1.resources[0]!.version);
    assert.equal(nackOnCacheMiss(again.resources[0]!.resource), false, "a filter coming back warms again");
  });

  it("a filter removed from the snapshot is named in removed_resources", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("removed"), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1", "f2"] });
    const r = await receiveAndAck(d, EXTENSION_CONFIG);
    assert.deepEqual(names(r).sort(), ["f1", "f2"]);
    assertSnapshotVersions(h, r);

    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "a")] }));
    const gone = await d.nextOf(EXTENSION_CONFIG, "the removal");
    assert.deepEqual(gone.removed_resources, ["f2"]);
    assert.deepEqual(gone.resources ?? [], [], "f1 is unchanged");
    assert.equal(gone.system_version_info, h.cache.get()!.types.get(EXTENSION_CONFIG)!.version);
  });

  it("an upstream turned DNS removes its EDS resource (removed_resources)", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("eds-removed"), type_url: ENDPOINT, resource_names_subscribe: ["upstream", "wasm_modules"] });
    await receiveAndAck(d, ENDPOINT);
    h.cache.set(snapshotOf({ upstream: { host: "echo.internal", port: 8080 } }));
    const r = await d.nextOf(ENDPOINT, "the EDS removal");
    assert.deepEqual(r.removed_resources, ["upstream"]);
    assert.deepEqual(r.resources ?? [], []);
  });

  it("records a NACK with the rejected resource names and does not re-send them", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("delta-nack"), type_url: CLUSTER, resource_names_subscribe: ["*"] });
    const r = await d.nextOf(CLUSTER);
    d.send(deltaNack(r, "cluster upstream: bad eds_config"));
    const st = await h.typeStatus("delta-nack", CLUSTER, (x) => x.lastNack !== undefined, "the CDS NACK");
    assert.equal(st.lastNack!.message, "cluster upstream: bad eds_config");
    assert.deepEqual([...st.lastNack!.resources!].sort(), ["upstream", "wasm_modules"]);
    assert.equal(st.lastNack!.version, r.system_version_info);
    assert.equal(st.lastNack!.nonce, r.nonce);
    // Alive, and CDS stays quiet: the LDS answer is the next response.
    d.send({ type_url: LISTENER, resource_names_subscribe: ["*"] });
    await d.nextOf(LISTENER, "LDS, with no CDS re-send before it");
    // A later version is sent.
    h.cache.set(snapshotOf({ moduleServer: { host: "modules.internal", port: 18080 } }));
    const next = await d.nextOf(CLUSTER, "the next cluster version");
    assert.deepEqual(names(next), ["wasm_modules"]);
    assertSnapshotVersions(h, next);
  });

  it("a NACK of a type's first response leaves the type un-ACKed in the registry", async () => {
    const d = h.connect().delta();
    d.send({ node: nodeOf("delta-nack-first"), type_url: CLUSTER, resource_names_subscribe: ["*"] });
    const r = await d.nextOf(CLUSTER);
    d.send(deltaNack(r, "rejected"));
    // Sync point: the LDS answer comes after the server handled the NACK.
    d.send({ type_url: LISTENER, resource_names_subscribe: ["*"] });
    await d.nextOf(LISTENER, "LDS (sync point)");
    const st = h.streamsOf("delta-nack-first")[0]!.types.get(CLUSTER)!;
    assert.equal(st.lastNack?.version, r.system_version_info);
    assert.equal(st.ackedVersion, undefined, `Envoy never accepted a CDS version, yet the registry shows ackedVersion ${st.ackedVersion} (the rejected one)`);
  });

  it("ends the stream with INVALID_ARGUMENT on an unknown type_url, and on a first request without node", async () => {
    const client = h.connect();
    const unknown = client.delta();
    unknown.send({ node: nodeOf("delta-unknown"), type_url: "type.googleapis.com/envoy.config.nope.v3.Nope", resource_names_subscribe: ["x"] });
    const s1 = await unknown.ended();
    assert.equal(s1.code, grpc.status.INVALID_ARGUMENT, s1.details);
    assert.deepEqual(unknown.received, []);

    const nodeless = client.delta();
    nodeless.send({ type_url: CLUSTER, resource_names_subscribe: ["*"] });
    const s2 = await nodeless.ended();
    assert.equal(s2.code, grpc.status.INVALID_ARGUMENT, s2.details);
    assert.deepEqual(h.clients.list(), []);
  });
});
