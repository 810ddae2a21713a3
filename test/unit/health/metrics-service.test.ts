// The MetricsService on a real gRPC server, driven by a raw grpc-js client the way Envoy's
// metrics_service sink drives it: node in the first message, cumulative counters every flush.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { after, before, describe, test } from "node:test";
import { addMetricsService, METRICS_SERVICE_PATH, type RuntimeFailureReport } from "../../../controlplane/health/metrics-service.ts";
import { encodeStreamMetricsMessage, type SinkMessage, type SinkNode } from "../../../controlplane/health/metrics-wire.ts";
import { XdsAuth } from "../../../controlplane/xds/auth.ts";
import { listenXds } from "../../../controlplane/xds/xds-server.ts";
import { waitFor } from "../../support/wait.ts";

describe("MetricsService", () => {
  let server: grpc.Server;
  let client: grpc.Client;
  const reports: RuntimeFailureReport[] = [];
  const opened: SinkNode[] = [];
  const closed: SinkNode[] = [];
  const heard: string[] = [];
  const quiet = { info: () => undefined, warn: () => undefined };

  before(async () => {
    server = new grpc.Server();
    addMetricsService(server, { opened: (n) => opened.push(n), closed: (n) => closed.push(n), heard: (n) => heard.push(n.id), report: (r) => reports.push(r), dropped: () => assert.fail("no binding: nothing dropped") }, quiet);
    const port = await listenXds(server, "127.0.0.1", 0);
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  function stream(): { write(m: SinkMessage): void; end(): Promise<grpc.ServiceError | null> } {
    let done!: (e: grpc.ServiceError | null) => void;
    const result = new Promise<grpc.ServiceError | null>((resolve) => (done = resolve));
    const call = client.makeClientStreamRequest(METRICS_SERVICE_PATH, (m: SinkMessage) => Buffer.from(encodeStreamMetricsMessage(m)), (b: Buffer) => b, (err) => done(err));
    return { write: (m) => call.write(m), end: () => { call.end(); return result; } };
  }

  test("reports per-plugin failure increases with the stream's node", async () => {
    const s = stream();
    const node = { id: "envoy-7", cluster: "edge" };
    s.write({ node, metrics: [{ name: "wasm.f.vm_reload_success", kind: "counter", value: 4 }, { name: "server.live", kind: "gauge", value: 1 }] });
    s.write({ metrics: [{ name: "wasm.f.vm_reload_success", kind: "counter", value: 6 }, { name: "wasm.f.vm_reload_failure", kind: "counter", value: 1 }, { name: "wasm.f.vm_reload_backoff", kind: "counter", value: 9 }, { name: "wasm.g.vm_reload_failure", kind: "counter", value: 2 }] });
    await waitFor(() => reports.length === 1, { what: "one report", timeoutMs: 5000 });
    assert.deepEqual(reports[0]?.node, node);
    assert.deepEqual(reports[0]?.failures, new Map([["f", 3], ["g", 2]]));
    assert.deepEqual(reports[0]?.stuckWorkers, new Map());
    assert.deepEqual(heard, ["envoy-7", "envoy-7"], "every flush is heard, with or without failures");
    assert.deepEqual(opened, [node]);
    assert.equal(await s.end(), null, "the stream ends with an empty response");
    await waitFor(() => closed.length === 1, { what: "closed", timeoutMs: 5000 });
  });

  test("a worker watchdog's mega miss is reported as a stuck worker", async () => {
    const s = stream();
    const node = { id: "envoy-8", cluster: "edge" };
    const before = reports.length;
    s.write({ node, metrics: [{ name: "server.worker_0.watchdog_mega_miss", kind: "counter", value: 0 }, { name: "server.worker_1.watchdog_mega_miss", kind: "counter", value: 2 }] });
    s.write({ metrics: [{ name: "server.worker_0.watchdog_mega_miss", kind: "counter", value: 1 }, { name: "server.worker_1.watchdog_mega_miss", kind: "counter", value: 2 }, { name: "workers.watchdog_mega_miss", kind: "counter", value: 3 }] });
    await waitFor(() => reports.length === before + 1, { what: "one report", timeoutMs: 5000 });
    assert.deepEqual(reports[before]?.stuckWorkers, new Map([["worker_0", 1]]), "only the rise, per worker; the aggregate is not a worker");
    assert.deepEqual(reports[before]?.failures, new Map());
    assert.equal(await s.end(), null);
  });

  test("a stream whose first message has no node is refused", async () => {
    const s = stream();
    s.write({ metrics: [{ name: "wasm.f.vm_reload_backoff", kind: "counter", value: 1 }] });
    const err = await s.end();
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err?.details ?? "", /identifier\.node/);
  });
});

describe("MetricsService: authentication and binding to the node's xDS connection", () => {
  const TOKEN = "0123456789abcdef0123456789abcdef";
  let server: grpc.Server;
  let port: number;
  const clients: grpc.Client[] = [];
  const reports: RuntimeFailureReport[] = [];
  const opened: { node: SinkNode; peer: string }[] = [];
  const dropped: { node: SinkNode; peer: string }[] = [];
  const warnings: string[] = [];
  /** Which (node, peer) pairs have an xDS stream; the tests change it. */
  let hasStream: (node: SinkNode, peer: string) => boolean = () => false;
  const asked: string[] = [];

  before(async () => {
    server = new grpc.Server();
    const log = { info: () => undefined, warn: (_o: object, msg: string) => void warnings.push(msg) };
    addMetricsService(server, {
      opened: (node, peer) => opened.push({ node, peer }), closed: () => undefined, heard: () => undefined,
      report: (r) => reports.push(r), dropped: (node, peer) => dropped.push({ node, peer }),
    }, log, {
      auth: new XdsAuth({ token: TOKEN }),
      bound: (node, peer) => {
        asked.push(peer);
        return hasStream(node, peer);
      },
    });
    port = await listenXds(server, "127.0.0.1", 0);
  });
  after(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });
  const reset = (): void => {
    for (const list of [reports, opened, dropped, warnings, asked] as unknown[][]) list.length = 0;
    hasStream = () => false;
  };

  function stream(metadata: grpc.Metadata): { write(m: SinkMessage): void; end(): Promise<grpc.ServiceError | null> } {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    clients.push(client);
    let done!: (e: grpc.ServiceError | null) => void;
    const result = new Promise<grpc.ServiceError | null>((resolve) => (done = resolve));
    const call = client.makeClientStreamRequest(METRICS_SERVICE_PATH, (m: SinkMessage) => Buffer.from(encodeStreamMetricsMessage(m)), (b: Buffer) => b, metadata, (err) => done(err));
    return { write: (m) => call.write(m), end: () => { call.end(); return result; } };
  }
  const bearer = (token: string): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set("authorization", `Bearer ${token}`);
    return m;
  };
  const reloads = (value: number): SinkMessage["metrics"] => [{ name: "wasm.f.vm_reload_success", kind: "counter", value }];
  const node = { id: "envoy-1", cluster: "edge" };

  test("without the token, or with another one: UNAUTHENTICATED before any message is read", async () => {
    reset();
    for (const metadata of [new grpc.Metadata(), bearer("0123456789abcdef0123456789abcdeX"), bearer(""), (() => {
      const m = new grpc.Metadata();
      m.set("authorization", TOKEN); // the token without the Bearer scheme
      return m;
    })()]) {
      const s = stream(metadata);
      s.write({ node, metrics: reloads(0) });
      s.write({ metrics: reloads(10) });
      const err = await s.end();
      assert.equal(err?.code, grpc.status.UNAUTHENTICATED, `${JSON.stringify(metadata.getMap())}: ${err?.details}`);
    }
    assert.deepEqual([reports, opened, dropped, asked], [[], [], [], []], "nothing reached the sink or the binding");
  });

  test("with the token but no xDS stream of that node on the connection: every message dropped, one warning", async () => {
    reset();
    const s = stream(bearer(TOKEN));
    s.write({ node, metrics: reloads(0) });
    for (let i = 1; i <= 3; i++) s.write({ metrics: reloads(10 * i) });
    assert.equal(await s.end(), null);
    assert.equal(dropped.length, 4);
    assert.deepEqual(dropped[0]?.node, node);
    assert.deepEqual([reports, opened], [[], []]);
    assert.equal(warnings.filter((w) => w.startsWith("stats dropped")).length, 1, "logged once per stream");
  });

  test("reports of another node than the connection's xDS stream are dropped", async () => {
    reset();
    hasStream = (n) => n.id === "envoy-1";
    const s = stream(bearer(TOKEN));
    s.write({ node: { id: "envoy-2", cluster: "edge" }, metrics: reloads(0) });
    s.write({ metrics: reloads(10) });
    assert.equal(await s.end(), null);
    assert.deepEqual([reports.length, opened.length, dropped.length], [0, 0, 2]);
  });

  test("a stream that opens before its node's xDS stream counts once bound, failures in between included", async () => {
    reset();
    const s = stream(bearer(TOKEN));
    s.write({ node, metrics: reloads(2) }); // baseline: counted before we heard of it
    s.write({ metrics: reloads(5) }); // unbound: dropped, not folded in
    await waitFor(() => dropped.length === 2, { what: "two dropped messages", timeoutMs: 5000 });
    const peer = asked[0]!;
    assert.match(peer, /^127\.0\.0\.1:\d+$/, "the binding is asked with the connection's address:port");
    hasStream = (n, p) => n.id === node.id && n.cluster === node.cluster && p === peer;
    s.write({ metrics: reloads(7) });
    await waitFor(() => reports.length === 1, { what: "the first bound report", timeoutMs: 5000 });
    assert.deepEqual(reports[0]?.failures, new Map([["f", 5]]), "7 - baseline 2: the rise while unbound counts too");
    assert.deepEqual(opened, [{ node, peer }]);
    // Bound for the stream's life: the connection cannot change under it.
    hasStream = () => false;
    s.write({ metrics: reloads(8) });
    await waitFor(() => reports.length === 2, { what: "a later report", timeoutMs: 5000 });
    assert.deepEqual(reports[1]?.failures, new Map([["f", 1]]));
    assert.equal(await s.end(), null);
    assert.equal(dropped.length, 2);
  });
});
