import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import pino from "pino";
import { EventBus } from "../../../controlplane/events/bus.ts";
import { AckLatencyTracker, PropagationTracker } from "../../../controlplane/events/propagation.ts";
import { createAdminApi } from "../../../controlplane/http/admin-api.ts";
import { ControlPlaneMetrics } from "../../../controlplane/http/metrics.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";
import { ClientRegistry, type ClientStatus, type TypeStatus } from "../../../controlplane/xds/client-status.ts";
import type { EncodedResource } from "../../../controlplane/xds/snapshot.ts";
import { EXTENSION_CONFIG, LISTENER, PUSH_ORDER, shortName } from "../../../controlplane/xds/type-urls.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);
const SHA_C = "c".repeat(64);

/** Parses Prometheus text into "name{labels}" -> value (label order as printed). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/**
 * A bus, a ClientRegistry on it, and metrics; ECDS resource versions are "<filter>@<sha>" so the
 * fake resourceAt can tell which module an ACKed version names.
 */
function rig() {
  const bus = new EventBus();
  const clients = new ClientRegistry(bus);
  const registry = new FilterRegistry();
  const resourceAt = (typeUrl: string, name: string, version: string): EncodedResource | undefined => {
    if (typeUrl !== EXTENSION_CONFIG || !version.startsWith(`${name}@`)) return undefined;
    return { name, version, moduleSha256: version.slice(name.length + 1), anyFor: () => ({ type_url: typeUrl, value: Buffer.alloc(0) }) };
  };
  const metrics = new ControlPlaneMetrics({ registry, clients, events: bus, resourceAt });
  let nextStream = 1;
  const connect = (node: string, ecdsHolds: Record<string, string> = {}): { client: ClientStatus; ecds: TypeStatus } => {
    const ecds: TypeStatus = { typeUrl: EXTENSION_CONFIG, resourceNames: Object.keys(ecdsHolds), ackedResources: Object.fromEntries(Object.entries(ecdsHolds).map(([f, sha]) => [f, `${f}@${sha}`])) };
    const client: ClientStatus = { streamId: nextStream++, nodeId: node, nodeCluster: "c", peer: "test", connectedAt: new Date().toISOString(), types: new Map([[EXTENSION_CONFIG, ecds]]) };
    clients.add(client);
    return { client, ecds };
  };
  /** An ECDS push and its ACK the way the SotW session does it: event first, state right after. */
  const sotwEcdsAck = (c: { client: ClientStatus; ecds: TypeStatus }, holds: Record<string, string>, version: string): void => {
    clients.pushed(c.client, EXTENSION_CONFIG, version, version, Object.keys(holds));
    clients.acked(c.client, EXTENSION_CONFIG, version);
    c.ecds.ackedResources = Object.fromEntries(Object.entries(holds).map(([f, sha]) => [f, `${f}@${sha}`]));
  };
  /** The Delta order: state first, then the event. */
  const deltaEcdsAck = (c: { client: ClientStatus; ecds: TypeStatus }, holds: Record<string, string>, version: string): void => {
    clients.pushed(c.client, EXTENSION_CONFIG, version, version, Object.keys(holds));
    c.ecds.ackedResources = { ...c.ecds.ackedResources, ...Object.fromEntries(Object.entries(holds).map(([f, sha]) => [f, `${f}@${sha}`])) };
    clients.acked(c.client, EXTENSION_CONFIG, version);
  };
  const scrape = async (): Promise<Map<string, number>> => {
    await Promise.resolve(); // let deferred ACK handling run, as a real scrape always would
    return samples(await metrics.render());
  };
  const edit = (filter: string, sha: string): void => {
    bus.emit({ type: "build.started", filter });
    bus.emit({ type: "build.succeeded", filter, sha256: sha, buildMs: 100, bytes: 1000 });
  };
  return { bus, clients, registry, metrics, connect, sotwEcdsAck, deltaEcdsAck, scrape, edit };
}

describe("metrics (prom-client, fed by the event bus)", () => {
  it("counts builds by result and observes their duration", async () => {
    const r = rig();
    let m = await r.scrape();
    assert.equal(m.get('wasmxds_builds_total{result="success"}'), 0, "series exist before the first build");
    assert.equal(m.get('wasmxds_builds_total{result="failure"}'), 0);
    r.bus.emit({ type: "build.started", filter: "f" });
    r.bus.emit({ type: "build.succeeded", filter: "f", sha256: SHA_A, buildMs: 400, bytes: 10 });
    r.bus.emit({ type: "build.started", filter: "f" });
    r.bus.emit({ type: "build.failed", filter: "f", error: "boom", buildMs: 120 });
    r.bus.emit({ type: "build.started", filter: "g" });
    r.bus.emit({ type: "build.succeeded", filter: "g", sha256: SHA_B, buildMs: 600, bytes: 10 });
    m = await r.scrape();
    assert.equal(m.get('wasmxds_builds_total{result="success"}'), 2);
    assert.equal(m.get('wasmxds_builds_total{result="failure"}'), 1);
    assert.equal(m.get('wasmxds_build_duration_seconds_count{result="success"}'), 2);
    assert.equal(m.get('wasmxds_build_duration_seconds_sum{result="success"}'), 1);
    assert.equal(m.get('wasmxds_build_duration_seconds_bucket{le="0.5",result="success"}'), 1);
    assert.equal(m.get('wasmxds_build_duration_seconds_sum{result="failure"}'), 0.12);
    r.metrics.close();
  });

  it("counts pushes and ACKs by short type name, and measures push-to-ACK per stream", async () => {
    const r = rig();
    const a = r.connect("envoy-a");
    let m = await r.scrape();
    for (const t of PUSH_ORDER) {
      assert.equal(m.get(`wasmxds_xds_pushes_total{type="${shortName(t)}"}`), 0);
      assert.equal(m.get(`wasmxds_xds_acks_total{type="${shortName(t)}"}`), 0);
    }
    r.clients.pushed(a.client, LISTENER, "l1", "1", ["wasm_listener"]);
    r.clients.acked(a.client, LISTENER, "l1");
    // ECDS through a code-cache miss: push, (Envoy NACKs the miss: no event), re-send, ACK.
    r.clients.pushed(a.client, EXTENSION_CONFIG, "e1", "2", ["f"]);
    r.clients.resentAfterFetch(a.client, [SHA_A]);
    r.clients.pushed(a.client, EXTENSION_CONFIG, "e1", "3", ["f"]);
    r.clients.acked(a.client, EXTENSION_CONFIG, "e1");
    // An ACK of a version never pushed on this stream (e.g. after a reconnect) is counted, not timed.
    r.clients.acked(a.client, LISTENER, "l0");
    m = await r.scrape();
    assert.equal(m.get('wasmxds_xds_pushes_total{type="LDS"}'), 1);
    assert.equal(m.get('wasmxds_xds_pushes_total{type="ECDS"}'), 2, "a re-send is a push");
    assert.equal(m.get('wasmxds_xds_acks_total{type="LDS"}'), 2);
    assert.equal(m.get('wasmxds_xds_acks_total{type="ECDS"}'), 1);
    assert.equal(m.get('wasmxds_xds_push_to_ack_seconds_count{type="LDS"}'), 1);
    assert.equal(m.get('wasmxds_xds_push_to_ack_seconds_count{type="ECDS"}'), 1, "one push-to-ACK, from the first push");
    assert.equal(m.get('wasmxds_xds_cache_miss_resends_total'), 1);
    r.metrics.close();
  });

  it("keeps the NACK and re-send metric names tests and dashboards rely on, from ClientRegistry", async () => {
    const r = rig();
    const a = r.connect("envoy-a");
    const lds: TypeStatus = { typeUrl: LISTENER, resourceNames: [] };
    r.clients.recordNack(a.client, lds, { version: "v", nonce: "1", message: "bad", at: new Date().toISOString() });
    r.clients.recordNack(a.client, lds, { version: "v2", nonce: "2", message: "bad", at: new Date().toISOString() });
    const text = await r.metrics.render();
    assert.match(text, /^wasmxds_xds_nacks_total\{type="LDS"\} 2$/m);
    assert.match(text, /^wasmxds_xds_nacks_total\{type="ECDS"\} 0$/m);
    assert.match(text, /^wasmxds_xds_cache_miss_resends_total 0$/m);
    assert.match(text, /^# TYPE wasmxds_xds_nacks_total counter$/m);
    r.metrics.close();
  });

  it("measures build start to each Envoy's ECDS ACK of the new module, and to the first one", async () => {
    const r = rig();
    const a = r.connect("envoy-a", { f: SHA_A }); // SotW
    const b = r.connect("envoy-b", { f: SHA_A }); // Delta
    const already = r.connect("envoy-already", { f: SHA_B }); // holds the new module already
    r.connect("envoy-no-ecds-yet").client.types.clear(); // not subscribed to ECDS
    r.edit("f", SHA_B);
    const late = r.connect("envoy-late", { f: SHA_A }); // connected after the build
    let m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 0);

    r.sotwEcdsAck(a, { f: SHA_B }, "e2");
    m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 1, "SotW: the ACK is read after the session recorded it");
    assert.equal(m.get("wasmxds_propagation_first_ack_seconds_count"), 1);

    r.deltaEcdsAck(b, { f: SHA_B }, "e2");
    r.sotwEcdsAck(already, { f: SHA_B }, "e2");
    r.sotwEcdsAck(late, { f: SHA_B }, "e2");
    r.sotwEcdsAck(a, { f: SHA_B }, "e2"); // a second ACK of the same module counts once
    m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 2, "a and b only: not the one already there, not the late one");
    assert.equal(m.get("wasmxds_propagation_first_ack_seconds_count"), 1, "first ACK once per change");
    const sum = m.get("wasmxds_propagation_seconds_sum")!;
    assert.ok(sum >= 0 && sum < 5, `plausible durations (sum ${sum})`);
    r.metrics.close();
  });

  it("an ECDS ACK of something else does not count; a newer build supersedes; failures and disconnects clear", async () => {
    const r = rig();
    const a = r.connect("envoy-a", { f: SHA_A, g: SHA_A });
    const b = r.connect("envoy-b", { f: SHA_A });
    r.edit("f", SHA_B);
    r.sotwEcdsAck(a, { f: SHA_A, g: SHA_C }, "e-other"); // another filter changed, f not yet
    let m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 0);

    r.edit("f", SHA_C); // saved again before any Envoy took B
    r.sotwEcdsAck(a, { f: SHA_B, g: SHA_C }, "e-b"); // a stale module: not the change now propagating
    m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 0);
    r.sotwEcdsAck(a, { f: SHA_C, g: SHA_C }, "e-c");
    m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 1);

    r.clients.remove(b.client.streamId); // b goes away before ACKing
    r.bus.emit({ type: "build.started", filter: "f" });
    r.bus.emit({ type: "build.failed", filter: "f", error: "x", buildMs: 1 });
    r.sotwEcdsAck(a, { f: SHA_C, g: SHA_C }, "e-c2");
    m = await r.scrape();
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 1, "a failed build propagates nothing");
    assert.equal(m.get("wasmxds_propagation_first_ack_seconds_count"), 1);
    r.metrics.close();
  });

  it("counts module bytes served, and reads streams, Envoys and filters at scrape time", async () => {
    const r = rig();
    r.bus.emit({ type: "module.served", sha256: SHA_A, node: "envoy-a", bytes: 1234 });
    r.bus.emit({ type: "module.served", sha256: SHA_A, node: "envoy-b", bytes: 1234 });
    const a = r.connect("envoy-a");
    r.clients.add({ ...a.client, streamId: 99, types: new Map() }); // envoy-a's second stream (per-type services)
    r.connect("envoy-b");
    r.registry.buildStarted("building");
    r.registry.buildSucceeded("ok", new Uint8Array([0, 97, 115, 109]), { sha256: SHA_A, rootId: "ok", buildMs: 1 }, {});
    r.registry.buildFailed("broken", "error");
    const m = await r.scrape();
    assert.equal(m.get("wasmxds_module_bytes_served_total"), 2468);
    assert.equal(m.get("wasmxds_module_downloads_total"), 2);
    assert.equal(m.get("wasmxds_xds_streams"), 3);
    assert.equal(m.get("wasmxds_xds_envoys"), 2);
    assert.equal(m.get('wasmxds_filters{status="ok"}'), 1);
    assert.equal(m.get('wasmxds_filters{status="building"}'), 1);
    assert.equal(m.get('wasmxds_filters{status="error"}'), 1);
    r.clients.remove(99);
    assert.equal((await r.scrape()).get("wasmxds_xds_streams"), 2);
    r.metrics.close();
  });

  it("each admin app has its own registry, fed by its own bus, and lets go of the bus on close", async () => {
    const apps = [new EventBus(), new EventBus()].map((bus) => ({
      bus,
      app: createAdminApi({
        registry: new FilterRegistry(),
        state: new OperatorState(path.join(os.tmpdir(), `wasm-xds-metrics-${process.pid}.json`)),
        clients: new ClientRegistry(bus),
        events: bus,
        snapshot: () => undefined,
        resourceAt: () => undefined,
        ready: () => true,
      }, pino({ level: "silent" })),
    }));
    for (const { app } of apps) await app.ready();
    apps[0]!.bus.emit({ type: "build.succeeded", filter: "f", sha256: SHA_A, buildMs: 1, bytes: 1 });
    const [first, second] = await Promise.all(apps.map(({ app }) => app.inject({ method: "GET", url: "/metrics" })));
    assert.equal(first!.statusCode, 200);
    assert.match(String(first!.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    assert.match(first!.body, /^wasmxds_builds_total\{result="success"\} 1$/m);
    assert.match(second!.body, /^wasmxds_builds_total\{result="success"\} 0$/m);
    assert.doesNotMatch(first!.body, /^process_|^nodejs_/m, "not the global default registry");
    for (const { app, bus } of apps) {
      await app.close();
      assert.equal(bus.subscriberCount, 0);
    }
  });
});

describe("latency trackers (exact times)", () => {
  it("propagation: from build start, per stream and first", () => {
    const each: number[] = [];
    const first: number[] = [];
    const acked = new Map<number, string>([[1, SHA_A], [2, SHA_A]]);
    const t = new PropagationTracker({
      ecdsStreams: () => [...acked.keys()].map((stream) => ({ stream, ackedModule: () => acked.get(stream) })),
      ackedModule: (stream) => acked.get(stream),
    }, { each: (s) => each.push(s), first: (s) => first.push(s) });
    t.buildStarted("f", 1000);
    t.buildSucceeded("f", SHA_B, 1500);
    acked.set(2, SHA_B);
    t.ecdsAcked(2, 2300);
    acked.set(1, SHA_B);
    t.ecdsAcked(1, 3000);
    assert.deepEqual(each, [1.3, 2]);
    assert.deepEqual(first, [1.3]);
    assert.deepEqual(t.pendingFilters(), [], "done once every stream ACKed");
  });

  it("propagation: a change no stream takes expires", () => {
    const each: number[] = [];
    const t = new PropagationTracker({
      ecdsStreams: () => [{ stream: 1, ackedModule: () => SHA_A }],
      ackedModule: () => SHA_B,
    }, { each: (s) => each.push(s), first: () => undefined }, 60_000);
    t.buildStarted("f", 0);
    t.buildSucceeded("f", SHA_B, 10);
    t.ecdsAcked(1, 60_001);
    assert.deepEqual(each, []);
    assert.deepEqual(t.pendingFilters(), []);
  });

  it("push-to-ACK: from the first push of a version; NACKs and closed streams forget", () => {
    const seen: [number, string][] = [];
    const t = new AckLatencyTracker((s, type) => seen.push([s, type]));
    t.pushed(1, EXTENSION_CONFIG, "v1", 0);
    t.pushed(1, EXTENSION_CONFIG, "v1", 500); // re-send after a code-cache miss
    t.acked(1, EXTENSION_CONFIG, "v1", 800);
    t.pushed(1, LISTENER, "l1", 0);
    t.nacked(1, LISTENER, "l1");
    t.acked(1, LISTENER, "l1", 10);
    t.pushed(2, LISTENER, "l1", 0);
    t.streamClosed(2);
    t.acked(2, LISTENER, "l1", 10);
    assert.deepEqual(seen, [[0.8, EXTENSION_CONFIG]]);
  });
});
