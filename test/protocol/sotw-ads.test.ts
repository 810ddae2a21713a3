// State-of-the-world xDS over ADS, against a real in-process server and a raw gRPC client.
// "Nothing was sent" is always proven by ordering: the server handles a stream's requests and a
// snapshot's pushes in order, so after a request (or change) that must be answered, the answer
// has to be the very next response; anything the server wrongly sent earlier would come first.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../controlplane/xds/type-urls.ts";
import type { DiscoveryResponse } from "../../controlplane/xds/discovery-types.ts";
import {
  decodeAny,
  filterSpec,
  namesOf,
  nodeOf,
  snapshotOf,
  sotwAck,
  sotwNack,
  startXds,
  type SotwStream,
  type XdsHarness,
} from "../support/xds-client.ts";

function typeVersion(h: XdsHarness, typeUrl: string): string {
  return h.cache.get()!.types.get(typeUrl)!.version;
}

/** Subscribes (the first call on a stream carries the node), receives and ACKs. */
async function subscribeAndAck(s: SotwStream, typeUrl: string, names: string[], node?: string): Promise<DiscoveryResponse> {
  s.send({ ...(node ? { node: nodeOf(node) } : {}), type_url: typeUrl, resource_names: names });
  const r = await s.nextOf(typeUrl, `the first ${typeUrl} response`);
  s.send(sotwAck(r, names));
  return r;
}

const ALL_TYPES: [string, string[]][] = [
  [CLUSTER, []],
  [ENDPOINT, ["upstream", "wasm_modules"]],
  [LISTENER, []],
  [ROUTE, ["local_route"]],
  [EXTENSION_CONFIG, ["f1", "f2"]],
];

describe("SotW over ADS", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  // Each test closes its clients and the server drops their streams before the next one starts.
  afterEach(() => h.reset());
  after(() => h.close());

  it("records an ACK in the ClientRegistry", async () => {
    const s = h.connect().sotw();
    s.send({ node: nodeOf("ack"), type_url: CLUSTER, resource_names: [] });
    const r = await s.nextOf(CLUSTER);
    assert.equal(r.version_info, typeVersion(h, CLUSTER));
    assert.deepEqual(namesOf(r).sort(), ["upstream", "wasm_modules"]);
    assert.equal(h.streamsOf("ack")[0]?.types.get(CLUSTER)?.ackedVersion, undefined, "not ACKed yet");
    s.send(sotwAck(r));
    const st = await h.typeStatus("ack", CLUSTER, (x) => x.ackedVersion !== undefined, "the CDS ACK");
    assert.equal(st.ackedVersion, r.version_info);
    assert.equal(st.sentVersion, r.version_info);
    assert.ok(st.sentAt && st.ackedAt && Date.parse(st.sentAt) <= Date.parse(st.ackedAt), `sent ${st.sentAt} <= ACKed ${st.ackedAt}`);
    assert.equal(h.clients.list().length, 1);
    assert.equal(h.clients.list()[0]!.nodeCluster, "wasm-xds");
  });

  it("records a NACK with Envoy's message and does not re-send the rejected version", async () => {
    const nacks = h.clients.nackCount;
    const s = h.connect().sotw();
    s.send({ node: nodeOf("nack"), type_url: LISTENER, resource_names: [] });
    const lds = await s.nextOf(LISTENER);
    s.send(sotwNack(lds, "listener wasm_listener: bad filter chain"));
    const st = await h.typeStatus("nack", LISTENER, (x) => x.lastNack !== undefined, "the LDS NACK");
    assert.equal(st.lastNack!.message, "listener wasm_listener: bad filter chain");
    assert.equal(st.lastNack!.version, lds.version_info, "the NACK names the rejected version");
    assert.equal(st.lastNack!.nonce, lds.nonce);
    assert.equal(st.ackedVersion, undefined);
    assert.equal(h.clients.nackCount, nacks + 1);
    // The stream is alive and LDS stays quiet: an unrelated CDS subscription is answered, and its
    // answer is the next response (a re-send of the rejected listener would have come first).
    s.send({ type_url: CLUSTER, resource_names: [] });
    const cds = await s.nextOf(CLUSTER, "CDS, with no LDS re-send before it");
    assert.equal(cds.version_info, typeVersion(h, CLUSTER));
    assert.equal(h.clients.nackCount, nacks + 1);
  });

  it("sends a later snapshot version after a NACK", async () => {
    const s = h.connect().sotw();
    s.send({ node: nodeOf("nack-then-fix"), type_url: LISTENER, resource_names: [] });
    const rejected = await s.nextOf(LISTENER);
    s.send(sotwNack(rejected, "bad listener"));
    await h.typeStatus("nack-then-fix", LISTENER, (x) => x.lastNack !== undefined, "the LDS NACK");

    h.cache.set(snapshotOf({ listenerPort: 10001 }));
    const fixed = await s.nextOf(LISTENER, "the next listener version");
    assert.equal(fixed.version_info, typeVersion(h, LISTENER));
    assert.notEqual(fixed.version_info, rejected.version_info);
    const listener = decodeAny(fixed.resources[0]!) as { address: { socket_address: { port_value: number } } };
    assert.equal(listener.address.socket_address.port_value, 10001);
    s.send(sotwAck(fixed));
    const st = await h.typeStatus("nack-then-fix", LISTENER, (x) => x.ackedVersion === fixed.version_info, "the ACK of the new version");
    assert.equal(st.lastNack!.version, rejected.version_info, "the NACK record stays for the admin API");
  });

  it("a reconnect holding the current version gets nothing for that type; one holding an old version gets the current", async () => {
    const current = typeVersion(h, LISTENER);
    const client = h.connect();

    const up = client.sotw();
    up.send({ node: nodeOf("reconnect-current"), type_url: LISTENER, version_info: current, resource_names: [] });
    up.send({ type_url: CLUSTER, resource_names: [] });
    await up.nextOf(CLUSTER, "CDS, with no LDS (already current) before it");
    const st = await h.typeStatus("reconnect-current", LISTENER, (x) => x.ackedVersion !== undefined, "LDS to count as in sync");
    assert.equal(st.ackedVersion, current);
    // In sync, not forgotten: the next listener change is pushed.
    h.cache.set(snapshotOf({ listenerPort: 10001 }));
    const pushed = await up.nextOf(LISTENER, "the next listener version");
    assert.equal(pushed.version_info, typeVersion(h, LISTENER));

    const old = snapshotOf({ listenerPort: 9999 }).types.get(LISTENER)!.version;
    const stale = client.sotw();
    stale.send({ node: nodeOf("reconnect-old"), type_url: LISTENER, version_info: old, resource_names: [] });
    const r = await stale.nextOf(LISTENER, "the current listener");
    assert.equal(r.version_info, typeVersion(h, LISTENER));
    assert.equal(r.resources.length, 1);
  });

  it("ignores a request carrying a stale nonce (ACK or NACK)", async () => {
    const nacks = h.clients.nackCount;
    const s = h.connect().sotw();
    s.send({ node: nodeOf("stale"), type_url: LISTENER, resource_names: [] });
    const r1 = await s.nextOf(LISTENER);
    h.cache.set(snapshotOf({ listenerPort: 10001 }));
    const r2 = await s.nextOf(LISTENER, "the superseding listener");
    assert.notEqual(r1.nonce, r2.nonce);

    // A NACK of the superseded response: ignored. The CDS answer is the sync point.
    s.send(sotwNack(r1, "stale rejection"));
    await subscribeAndAck(s, CLUSTER, []);
    await h.typeStatus("stale", CLUSTER, (x) => x.ackedVersion !== undefined, "the CDS ACK (sync point)");
    let lds = h.streamsOf("stale")[0]!.types.get(LISTENER)!;
    assert.equal(lds.lastNack, undefined, "a stale NACK is not recorded");
    assert.equal(h.clients.nackCount, nacks);

    // An ACK of the superseded response: ignored too.
    s.send(sotwAck(r1));
    h.cache.set(snapshotOf({ listenerPort: 10001, upstream: { host: "127.0.0.1", port: 8081 } })); // EDS only
    s.send({ type_url: ENDPOINT, resource_names: ["upstream"] });
    await s.nextOf(ENDPOINT, "EDS (sync point), with nothing before it");
    lds = h.streamsOf("stale")[0]!.types.get(LISTENER)!;
    assert.equal(lds.ackedVersion, undefined, "a stale ACK does not count");

    s.send(sotwAck(r2));
    await h.typeStatus("stale", LISTENER, (x) => x.ackedVersion === r2.version_info, "the ACK of the current nonce");
  });

  it("a snapshot change sends only the changed types, in push order CDS, EDS, LDS, RDS, ECDS", async () => {
    const s = h.connect().sotw();
    let first = true;
    for (const [typeUrl, names] of ALL_TYPES) {
      await subscribeAndAck(s, typeUrl, names, first ? "order" : undefined);
      first = false;
    }
    await h.typeStatus("order", EXTENSION_CONFIG, (x) => x.ackedVersion !== undefined, "every type ACKed");

    // Move the upstream (EDS) and disable a filter (RDS): exactly those two, EDS first.
    h.cache.set(snapshotOf({ upstream: { host: "127.0.0.1", port: 8081 }, filters: [filterSpec("f1", "a", false), filterSpec("f2", "b")] }));
    const eds = await s.next("the first push");
    const rds = await s.next("the second push");
    assert.deepEqual([eds.type_url, rds.type_url], [ENDPOINT, ROUTE]);
    s.send(sotwAck(eds, ["upstream", "wasm_modules"]));
    s.send(sotwAck(rds, ["local_route"]));
    // Nothing else came with that change: the next change's only push is the very next response.
    h.cache.set(snapshotOf({ listenerPort: 10001, upstream: { host: "127.0.0.1", port: 8081 }, filters: [filterSpec("f1", "a", false), filterSpec("f2", "b")] }));
    const lds = await s.nextOf(LISTENER, "the LDS-only change, with nothing before it");
    s.send(sotwAck(lds));

    // Every type at once: a DNS upstream (CDS, and its endpoints leave EDS), the listener
    // port (LDS), the other filter disabled (RDS) and a new module for f1 (ECDS).
    h.cache.set(snapshotOf({
      listenerPort: 10002,
      upstream: { host: "echo.internal", port: 8080 },
      filters: [filterSpec("f1", "c", false), filterSpec("f2", "b", false)],
    }));
    const pushes: DiscoveryResponse[] = [];
    for (let i = 0; i < 5; i++) pushes.push(await s.next(`push ${i + 1} of 5`));
    assert.deepEqual(pushes.map((p) => p.type_url), [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTENSION_CONFIG]);
    for (const p of pushes) assert.equal(p.version_info, typeVersion(h, p.type_url), `${p.type_url} carries the new version`);
    assert.deepEqual(namesOf(pushes[1]!), ["wasm_modules"], "the DNS upstream has no EDS resource any more");
  });

  it("an ECDS update carries only the filters changed since the ACK; after a NACK, every filter again", async () => {
    const three = (f1: string, f2: string, f3: string) => [filterSpec("f1", f1), filterSpec("f2", f2), filterSpec("f3", f3)];
    h.cache.set(snapshotOf({ filters: three("a", "b", "c") }));
    const s = h.connect().sotw();
    const names = ["f1", "f2", "f3"];
    const r1 = await subscribeAndAck(s, EXTENSION_CONFIG, names, "subset");
    assert.deepEqual(namesOf(r1).sort(), names);
    await h.typeStatus("subset", EXTENSION_CONFIG, (x) => x.ackedVersion === r1.version_info, "the first ECDS ACK");

    h.cache.set(snapshotOf({ filters: three("a", "d", "c") }));
    const r2 = await s.nextOf(EXTENSION_CONFIG, "the f2 module change");
    assert.deepEqual(namesOf(r2), ["f2"], "only the changed filter");
    assert.equal(r2.version_info, typeVersion(h, EXTENSION_CONFIG), "with the type's new version");
    s.send(sotwAck(r2, names));
    const acked = await h.typeStatus("subset", EXTENSION_CONFIG, (x) => x.ackedVersion === r2.version_info, "the subset's ACK");
    assert.deepEqual(Object.keys(acked.ackedResources ?? {}).sort(), names, "the ACK covers every filter Envoy holds");

    // A configuration change (a new module's NACK would be taken for a cache miss first).
    const f3Configured = { ...filterSpec("f3", "c"), configuration: "bad" };
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "a"), filterSpec("f2", "d"), f3Configured] }));
    const r3 = await s.nextOf(EXTENSION_CONFIG, "the f3 configuration change");
    assert.deepEqual(namesOf(r3), ["f3"]);
    s.send(sotwNack(r3, "f3: bad configuration", names, r2.version_info));
    await h.typeStatus("subset", EXTENSION_CONFIG, (x) => x.lastNack?.version === r3.version_info, "the NACK");

    // What Envoy holds after a NACK is not one map: the next update carries every filter.
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "g"), filterSpec("f2", "d"), f3Configured] }));
    const r4 = await s.nextOf(EXTENSION_CONFIG, "the update after the NACK");
    assert.deepEqual(namesOf(r4).sort(), names);
  });

  it("answers RDS and ECDS only with the requested names", async () => {
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "a"), filterSpec("f2", "b"), filterSpec("f3", "c")] }));
    const s = h.connect().sotw();
    s.send({ node: nodeOf("names"), type_url: EXTENSION_CONFIG, resource_names: ["f2"] });
    const ecds = await s.nextOf(EXTENSION_CONFIG);
    assert.deepEqual(namesOf(ecds), ["f2"]);
    s.send({ type_url: ROUTE, resource_names: ["local_route", "no_such_route"] });
    const rds = await s.nextOf(ROUTE);
    assert.deepEqual(namesOf(rds), ["local_route"]);
  });

  it("a changed ECDS subscription (names grow, then shrink) is answered with the new names", async () => {
    const s = h.connect().sotw();
    const r1 = await subscribeAndAck(s, EXTENSION_CONFIG, ["f1"], "grow");
    assert.deepEqual(namesOf(r1), ["f1"]);
    await h.typeStatus("grow", EXTENSION_CONFIG, (x) => x.ackedVersion !== undefined, "the ECDS ACK");

    s.send({ type_url: EXTENSION_CONFIG, version_info: r1.version_info, response_nonce: r1.nonce, resource_names: ["f1", "f2"] });
    const r2 = await s.nextOf(EXTENSION_CONFIG, "the answer to the grown subscription");
    assert.deepEqual(namesOf(r2).sort(), ["f1", "f2"]);
    assert.notEqual(r2.nonce, r1.nonce);
    s.send(sotwAck(r2, ["f1", "f2"]));
    const st = await h.typeStatus("grow", EXTENSION_CONFIG, (x) => x.ackedVersion !== undefined && x.resourceNames.length === 2, "the grown subscription ACKed");
    assert.deepEqual(st.resourceNames, ["f1", "f2"]);

    s.send({ type_url: EXTENSION_CONFIG, version_info: r2.version_info, response_nonce: r2.nonce, resource_names: ["f2"] });
    const r3 = await s.nextOf(EXTENSION_CONFIG, "the answer to the shrunk subscription");
    assert.deepEqual(namesOf(r3), ["f2"]);
  });

  it("ends a stream whose first request has no node with INVALID_ARGUMENT", async () => {
    const s = h.connect().sotw();
    s.send({ type_url: CLUSTER, resource_names: [] });
    const status = await s.ended();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
    assert.match(status.details, /node/);
    assert.deepEqual(s.received, []);
    assert.deepEqual(h.clients.list(), []);
  });

  it("ends a stream requesting an unknown type_url with INVALID_ARGUMENT and forgets the client", async () => {
    const s = h.connect().sotw();
    s.send({ node: nodeOf("unknown-type"), type_url: CLUSTER, resource_names: [] });
    await s.nextOf(CLUSTER);
    assert.equal(h.streamsOf("unknown-type").length, 1);
    s.send({ type_url: "type.googleapis.com/envoy.config.nope.v3.Nope", resource_names: [] });
    const status = await s.ended();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
    assert.match(status.details, /envoy\.config\.nope\.v3\.Nope/);
    assert.deepEqual(h.streamsOf("unknown-type"), []);
  });
});
