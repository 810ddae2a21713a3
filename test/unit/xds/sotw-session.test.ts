import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FetchTracker } from "../../../controlplane/registry/fetch-tracker.ts";
import { ClientRegistry } from "../../../controlplane/xds/client-status.ts";
import { decodeMessage } from "../../../controlplane/xds/codec.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "../../../controlplane/xds/discovery-types.ts";
import { buildResources, type FilterResourceSpec } from "../../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../../controlplane/xds/snapshot.ts";
import { ProtocolError, RESEND_AFTER_FETCH_MS, SotwSession } from "../../../controlplane/xds/sotw-session.ts";
import { CLUSTER, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../../controlplane/xds/type-urls.ts";
import { waitFor } from "../../support/wait.ts";

const NODE = { id: "envoy-1", cluster: "wasm-xds" };

function snapshotOf(filters: FilterResourceSpec[]): Snapshot {
  return encodeSnapshot(buildResources({
    listener: { address: "127.0.0.1", port: 10000 },
    upstream: { host: "127.0.0.1", port: 8080 },
    moduleServer: { host: "127.0.0.1", port: 18080 },
    filters,
  }));
}

const filter = (sha: string, enabled = true): FilterResourceSpec => ({ name: "f", sha256: sha.repeat(64), rootId: "f", enabled });

function harness(initial: Snapshot) {
  let snapshot = initial;
  const sent: DiscoveryResponse[] = [];
  const registry = new ClientRegistry();
  const fetches = new FetchTracker();
  const session = new SotwSession(1, "test", {
    registry,
    fetches,
    log: { info: () => undefined, warn: () => undefined },
    snapshot: () => snapshot,
    send: (r) => sent.push(r),
    types: [CLUSTER, LISTENER, ROUTE, EXTENSION_CONFIG],
    source: "ads",
    cacheMissGraceMs: 200,
  });
  const request = (req: DiscoveryRequest): DiscoveryResponse[] => {
    const from = sent.length;
    session.handleRequest(req);
    return sent.slice(from);
  };
  const setSnapshot = (next: Snapshot): DiscoveryResponse[] => {
    const changed = [...next.types.keys()].filter((t) => next.types.get(t)!.version !== snapshot.types.get(t)?.version);
    snapshot = next;
    const from = sent.length;
    session.handleSnapshot(next, changed);
    return sent.slice(from);
  };
  const status = (typeUrl: string) => session.client.types.get(typeUrl)!;
  return { session, sent, registry, fetches, request, setSnapshot, status };
}

function nackFlag(r: DiscoveryResponse): boolean {
  const decoded = decodeMessage(EXTENSION_CONFIG, r.resources[0]!.value) as { typed_config: { config: { vm_config: { nack_on_code_cache_miss?: boolean } } } };
  return decoded.typed_config.config.vm_config.nack_on_code_cache_miss === true;
}

describe("SotwSession", () => {
  it("rejects a first request without a node, and unknown type URLs", () => {
    const h = harness(snapshotOf([filter("a")]));
    assert.throws(() => h.request({ type_url: CLUSTER }), (e: unknown) => e instanceof ProtocolError && /node\.id/.test(e.message));
    assert.throws(() => h.request({ node: NODE, type_url: "type.googleapis.com/nope.Nope" }), (e: unknown) => e instanceof ProtocolError && e.grpcCode === 3);
  });

  it("answers a subscription, records the ACK, and sends nothing more until a change", () => {
    const snap = snapshotOf([filter("a")]);
    const h = harness(snap);
    const [cds] = h.request({ node: NODE, type_url: CLUSTER });
    assert.equal(cds?.version_info, snap.types.get(CLUSTER)!.version);
    assert.equal(cds?.resources.length, 2);
    assert.deepEqual(h.request({ type_url: CLUSTER, version_info: cds!.version_info, response_nonce: cds!.nonce }), []);
    assert.equal(h.status(CLUSTER).ackedVersion, cds!.version_info);
    assert.equal(h.registry.list()[0]?.nodeId, "envoy-1");
  });

  it("pushes only the types a snapshot changed, clusters before listeners before routes", () => {
    const h = harness(snapshotOf([filter("a")]));
    for (const [t, names] of [[CLUSTER, []], [LISTENER, []], [ROUTE, ["local_route"]]] as const) {
      const [r] = h.request({ node: NODE, type_url: t, resource_names: [...names] });
      h.request({ type_url: t, version_info: r!.version_info, response_nonce: r!.nonce, resource_names: [...names] });
    }
    const toggled = h.setSnapshot(snapshotOf([filter("a", false)]));
    assert.deepEqual(toggled.map((r) => r.type_url), [ROUTE], "a toggle is an RDS-only change");
  });

  it("records a NACK with Envoy's message and does not re-send the rejected version", () => {
    const h = harness(snapshotOf([filter("a")]));
    const [lds] = h.request({ node: NODE, type_url: LISTENER });
    const again = h.request({ type_url: LISTENER, version_info: "", response_nonce: lds!.nonce, error_detail: { code: 3, message: "bad listener" } });
    assert.deepEqual(again, []);
    assert.equal(h.status(LISTENER).lastNack?.message, "bad listener");
    assert.equal(h.status(LISTENER).lastNack?.version, lds!.version_info);
    assert.equal(h.status(LISTENER).ackedVersion, undefined);
    assert.equal(h.registry.nackCount, 1);
    // A nonce never issued on this stream is a protocol error.
    assert.throws(() => h.request({ type_url: LISTENER, response_nonce: "999", error_detail: { message: "bogus" } }), (e: unknown) => e instanceof ProtocolError && /never sent/.test(e.message));
    assert.equal(h.registry.nackCount, 1);
  });

  it("ignores a stale (superseded) nonce", () => {
    const h = harness(snapshotOf([filter("a")]));
    const [first] = h.request({ node: NODE, type_url: ROUTE, resource_names: ["local_route"] });
    const [second] = h.setSnapshot(snapshotOf([filter("a", false)]));
    assert.ok(second, "the change was pushed");
    assert.deepEqual(h.request({ type_url: ROUTE, resource_names: ["local_route"], response_nonce: first!.nonce, error_detail: { message: "late NACK of the old one" } }), []);
    assert.equal(h.registry.nackCount, 0, "an answer to a superseded response changes nothing");
  });

  it("sends nothing to a reconnecting Envoy that already holds the current version", () => {
    const snap = snapshotOf([filter("a")]);
    const h = harness(snap);
    const version = snap.types.get(LISTENER)!.version;
    assert.deepEqual(h.request({ node: NODE, type_url: LISTENER, version_info: version }), []);
    assert.equal(h.status(LISTENER).ackedVersion, version);
    // ...but an Envoy holding an older version gets the current one.
    const h2 = harness(snap);
    assert.equal(h2.request({ node: NODE, type_url: LISTENER, version_info: "old" }).length, 1);
  });

  it("ECDS: a warming filter fetches on init; an update takes the cache-miss path and is re-sent after the fetch", async () => {
    const h = harness(snapshotOf([filter("a")]));
    const [first] = h.request({ node: NODE, type_url: EXTENSION_CONFIG, resource_names: ["f"] });
    assert.equal(nackFlag(first!), false, "warming: Envoy fetches through its init manager");
    h.request({ type_url: EXTENSION_CONFIG, resource_names: ["f"], version_info: first!.version_info, response_nonce: first!.nonce });

    const [update] = h.setSnapshot(snapshotOf([filter("b")]));
    assert.equal(nackFlag(update!), true, "update of a warm filter: NACK on cache miss, old module keeps serving");
    const url = (decodeMessage(EXTENSION_CONFIG, update!.resources[0]!.value) as { typed_config: { config: { vm_config: { code: { remote: { http_uri: { uri: string } } } } } } }).typed_config.config.vm_config.code.remote.http_uri.uri;
    assert.match(url, /\/modules\/b{64}\.wasm\?node=envoy-1$/);

    h.fetches.started("envoy-1", "b".repeat(64));
    assert.deepEqual(h.request({ type_url: EXTENSION_CONFIG, resource_names: ["f"], version_info: first!.version_info, response_nonce: update!.nonce, error_detail: { message: "Unable to create Wasm plugin f" } }), []);
    assert.equal(h.status(EXTENSION_CONFIG).lastNack, undefined, "a cache miss is not reported as a rejection");
    const before = h.sent.length;
    h.fetches.completed("envoy-1", "b".repeat(64));
    const resent = await waitFor(() => h.sent[before], { what: "the re-send", timeoutMs: RESEND_AFTER_FETCH_MS + 2000 });
    assert.equal(resent.version_info, update!.version_info, "same version");
    assert.equal(nackFlag(resent), true, "re-sent with the flag: a failed fetch stays a NACK");
    const resentUrl = (decodeMessage(EXTENSION_CONFIG, resent.resources[0]!.value) as { typed_config: { config: { vm_config: { code: { remote: { http_uri: { uri: string } } } } } } }).typed_config.config.vm_config.code.remote.http_uri.uri;
    assert.match(resentUrl, /\/modules\/b{64}\.wasm\?node=envoy-1&fetched=1$/, "a new URL, so Envoy does not ignore it as the config it rejected");
    assert.equal(h.session.client.cacheMissResends, 1);
    // A NACK of the re-send is a real rejection.
    h.request({ type_url: EXTENSION_CONFIG, resource_names: ["f"], response_nonce: resent.nonce, error_detail: { message: "onConfigure failed" } });
    assert.equal(h.status(EXTENSION_CONFIG).lastNack?.message, "onConfigure failed");
  });

  it("ECDS: a NACK with no module fetch becomes a recorded rejection after the grace period", async () => {
    const h = harness(snapshotOf([filter("a")]));
    const [first] = h.request({ node: NODE, type_url: EXTENSION_CONFIG, resource_names: ["f"] });
    h.request({ type_url: EXTENSION_CONFIG, resource_names: ["f"], version_info: first!.version_info, response_nonce: first!.nonce });
    const [update] = h.setSnapshot(snapshotOf([filter("c")]));
    h.request({ type_url: EXTENSION_CONFIG, resource_names: ["f"], response_nonce: update!.nonce, error_detail: { message: "root id mismatch" } });
    const nack = await waitFor(() => h.status(EXTENSION_CONFIG).lastNack, { what: "the NACK to be recorded", timeoutMs: 5000 });
    assert.equal(nack.version, update!.version_info);
    assert.equal(nack.message, "root id mismatch", "Envoy's own message is what the API shows");
    h.session.close();
  });
});
