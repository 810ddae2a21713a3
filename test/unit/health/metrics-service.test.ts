// The MetricsService on a real gRPC server, driven by a raw grpc-js client the way Envoy's
// metrics_service sink drives it: node in the first message, cumulative counters every flush.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { after, before, describe, test } from "node:test";
import { addMetricsService, METRICS_SERVICE_PATH, type RuntimeFailureReport } from "../../../controlplane/health/metrics-service.ts";
import { encodeStreamMetricsMessage, type SinkMessage, type SinkNode } from "../../../controlplane/health/metrics-wire.ts";
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
    addMetricsService(server, { opened: (n) => opened.push(n), closed: (n) => closed.push(n), heard: (n) => heard.push(n.id), report: (r) => reports.push(r) }, quiet);
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
