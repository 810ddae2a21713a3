// ECDS-only Envoys (docs/ecds-only.md): the pure parts. Envoy's behaviour is in test/e2e/ecds-only.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FetchTracker } from "../../../controlplane/registry/fetch-tracker.ts";
import { SnapshotCache } from "../../../controlplane/xds/cache.ts";
import { ClientRegistry, describeClients, type ClientStatus } from "../../../controlplane/xds/client-status.ts";
import { decodeMessage } from "../../../controlplane/xds/codec.ts";
import type { DiscoveryResponse } from "../../../controlplane/xds/discovery-types.ts";
import { WARM_FETCH_CHECK_MS } from "../../../controlplane/xds/ecds-delivery.ts";
import { buildResources, NATIVE_NOOP_FILTER_TYPE, type FilterResourceSpec } from "../../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../../controlplane/xds/snapshot.ts";
import { SotwSession } from "../../../controlplane/xds/sotw-session.ts";
import { EXTENSION_CONFIG, LISTENER } from "../../../controlplane/xds/type-urls.ts";
import { waitFor } from "../../support/wait.ts";

const filters: FilterResourceSpec[] = [
  { name: "off", sha256: "a".repeat(64), rootId: "off", enabled: false },
  { name: "on", sha256: "b".repeat(64), rootId: "on", enabled: true },
];

function snapshotOf(ecdsOnly: boolean, specs = filters): Snapshot {
  return encodeSnapshot(buildResources({
    listener: { address: "127.0.0.1", port: 10000 },
    upstream: { host: "127.0.0.1", port: 8080 },
    moduleServer: { host: "127.0.0.1", port: 18080 },
    filters: specs,
    ecdsOnly,
  }));
}

type Decoded = { name: string; typed_config: { "@type"?: string; type_url?: string; config?: { vm_config: { nack_on_code_cache_miss?: boolean } } } };
const decodeEcds = (value: Uint8Array): Decoded => decodeMessage(EXTENSION_CONFIG, value) as Decoded;

describe("ECDS resources for an ECDS-only Envoy", () => {
  it("a disabled filter is the native no-op; an enabled one is byte-identical to other Envoys'", () => {
    const own = snapshotOf(true).types.get(EXTENSION_CONFIG)!.resources;
    const shared = snapshotOf(false).types.get(EXTENSION_CONFIG)!.resources;
    assert.equal(own.get("off")!.nativeNoop, true);
    assert.equal(own.get("off")!.moduleSha256, undefined, "no module to fetch");
    const noop = decodeEcds(own.get("off")!.anyFor().value);
    assert.equal(noop.name, "off");
    assert.match(JSON.stringify(noop.typed_config), /header_mutation/);
    assert.notEqual(own.get("off")!.version, shared.get("off")!.version);
    assert.equal(shared.get("off")!.nativeNoop, undefined, "Envoys on our listener still get the Wasm config");
    assert.equal(own.get("on")!.version, shared.get("on")!.version);
    assert.ok(NATIVE_NOOP_FILTER_TYPE.endsWith("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"));
  });

  it("a NACK of the no-op is no verdict for the node group; a NACK of a Wasm version is", () => {
    const cache = new SnapshotCache();
    const snap = snapshotOf(true);
    cache.set(snap);
    const rejections = cache.rejectionsFor(() => "ecds-only:");
    const ecds = snap.types.get(EXTENSION_CONFIG)!.resources;
    rejections.reject(EXTENSION_CONFIG, "off", ecds.get("off")!.version);
    assert.equal(rejections.isRejected(EXTENSION_CONFIG, "off", ecds.get("off")!.version), false);
    rejections.reject(EXTENSION_CONFIG, "on", ecds.get("on")!.version);
    assert.equal(rejections.isRejected(EXTENSION_CONFIG, "on", ecds.get("on")!.version), true);
  });
});

describe("ClientRegistry.usesOurRoutes", () => {
  const stream = (streamId: number, peer: string, types: string[]): ClientStatus => ({
    streamId, nodeId: "n", nodeCluster: "c", peer, connectedAt: "", types: new Map(types.map((t) => [t, { typeUrl: t, resourceNames: [] }])),
  });

  it("is true when a stream of the same node on the same connection takes LDS, and stays so", () => {
    const registry = new ClientRegistry();
    const ecds = stream(1, "p1", [EXTENSION_CONFIG]);
    registry.add(ecds);
    assert.equal(registry.usesOurRoutes(ecds), false);
    assert.equal(describeClients(registry.list())[0]!.ecdsOnly, true);
    const lds = stream(2, "p1", [LISTENER]);
    registry.add(lds);
    assert.equal(registry.usesOurRoutes(ecds), true);
    assert.equal(describeClients(registry.list())[0]!.ecdsOnly, false);
    registry.remove(2);
    assert.equal(registry.usesOurRoutes(ecds), true, "latched: an LDS stream reconnecting does not flip it");
  });

  it("ignores other connections and other nodes", () => {
    const registry = new ClientRegistry();
    const ecds = stream(1, "p1", [EXTENSION_CONFIG]);
    registry.add(ecds);
    registry.add(stream(2, "p2", [LISTENER]));
    registry.add({ ...stream(3, "p1", [LISTENER]), nodeId: "other" });
    assert.equal(registry.usesOurRoutes(ecds), false);
  });
});

describe("first delivery to an ECDS-only Envoy whose listener may be warm", () => {
  const node = { id: "own-listeners", cluster: "c" };
  const harness = (ecdsOnly: boolean) => {
    const sent: DiscoveryResponse[] = [];
    const fetches = new FetchTracker();
    const snap = snapshotOf(true, [filters[1]!]);
    const session = new SotwSession(1, "p", {
      registry: new ClientRegistry(), fetches, log: { info: () => undefined, warn: () => undefined },
      snapshot: () => snap, send: (r) => sent.push(r), types: [EXTENSION_CONFIG], source: "grpc", ecdsOnly: () => ecdsOnly,
    });
    session.handleRequest({ node, type_url: EXTENSION_CONFIG, resource_names: ["on"] });
    const [first] = sent;
    assert.ok(first);
    assert.equal(decodeEcds(first.resources[0]!.value).typed_config.config?.vm_config.nack_on_code_cache_miss, false, "fetch while warming");
    return { session, sent, fetches, first };
  };

  it("is delivered again through the cache-miss path when no download follows its ACK", async () => {
    const h = harness(true);
    h.session.handleRequest({ type_url: EXTENSION_CONFIG, resource_names: ["on"], version_info: h.first.version_info, response_nonce: h.first.nonce });
    const again = await waitFor(() => h.sent[1], { what: "the second delivery", timeoutMs: WARM_FETCH_CHECK_MS * 5 });
    assert.equal(decodeEcds(again.resources[0]!.value).typed_config.config?.vm_config.nack_on_code_cache_miss, true);
    h.session.close();
  });

  it("is left alone when the module download shows, and for Envoys on our listener", async () => {
    const downloaded = harness(true);
    downloaded.fetches.started(node.id, "b".repeat(64));
    const ours = harness(false);
    for (const h of [downloaded, ours]) {
      h.session.handleRequest({ type_url: EXTENSION_CONFIG, resource_names: ["on"], version_info: h.first.version_info, response_nonce: h.first.nonce });
    }
    // A third, ECDS-only harness without a download is the clock: once it re-delivers, the check has run for all.
    const clock = harness(true);
    clock.session.handleRequest({ type_url: EXTENSION_CONFIG, resource_names: ["on"], version_info: clock.first.version_info, response_nonce: clock.first.nonce });
    await waitFor(() => clock.sent[1], { what: "the check to run", timeoutMs: WARM_FETCH_CHECK_MS * 5 });
    assert.equal(downloaded.sent.length, 1);
    assert.equal(ours.sent.length, 1);
    for (const h of [downloaded, ours, clock]) h.session.close();
  });
});
