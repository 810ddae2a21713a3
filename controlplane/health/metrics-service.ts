// envoy.service.metrics.v3.MetricsService on the control plane's gRPC (xDS) server: Envoy's
// `envoy.stat_sinks.metrics_service` streams its stats here every stats_flush_interval
// (envoy-bootstrap/envoy.yaml). We read only the Wasm plugins' failure counters and report
// their increases per node; nothing is answered until Envoy closes the stream (the service
// defines an empty response Envoy does not wait for).
import * as grpc from "@grpc/grpc-js";
import { decodeStreamMetricsMessage, type SinkMessage, type SinkNode } from "./metrics-wire.ts";
import { CounterDeltas, failurePlugin, stuckWorker } from "./plugin-failures.ts";

export const METRICS_SERVICE_PATH = "/envoy.service.metrics.v3.MetricsService/StreamMetrics";

export interface RuntimeFailureReport {
  node: SinkNode;
  /** Plugin (= filter) name -> crashes of its VM since the previous flush. */
  failures: Map<string, number>;
  /** Worker (e.g. "worker_0") -> watchdog mega misses since the previous flush: a stuck thread. */
  stuckWorkers?: Map<string, number>;
  at: number;
}

export interface MetricsServiceLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const definition: grpc.ServiceDefinition = {
  StreamMetrics: {
    path: METRICS_SERVICE_PATH,
    requestStream: true,
    responseStream: false,
    requestSerialize: (m: Uint8Array) => Buffer.from(m),
    requestDeserialize: (b: Buffer): SinkMessage => decodeStreamMetricsMessage(b),
    // StreamMetricsResponse has no fields: its encoding is empty.
    responseSerialize: () => Buffer.alloc(0),
    responseDeserialize: () => ({}),
  },
};

/** What the service tells its user: streams opening and closing, each flush, and counters rising. */
export interface MetricsServiceSink {
  opened(node: SinkNode, peer: string): void;
  closed(node: SinkNode): void;
  /** Every flush, so a reader can tell an Envoy whose stats stopped arriving. */
  heard(node: SinkNode, at: number): void;
  report(r: RuntimeFailureReport): void;
}

/** Adds the metrics service to `server` (before it binds). */
export function addMetricsService(server: grpc.Server, sink: MetricsServiceSink, log: MetricsServiceLog): void {
  server.addService(definition, {
    StreamMetrics: (call: grpc.ServerReadableStream<SinkMessage, Record<string, never>>, callback: grpc.sendUnaryData<Record<string, never>>) => {
      let node: SinkNode | undefined;
      let rejected = false;
      const failureDeltas = new CounterDeltas(failurePlugin);
      const watchdogDeltas = new CounterDeltas(stuckWorker);
      call.on("data", (message: SinkMessage) => {
        if (rejected) return;
        if (message.node && !node) {
          node = message.node;
          log.info({ node: node.id, cluster: node.cluster, peer: call.getPeer() }, "Envoy stats stream opened");
          sink.opened(node, call.getPeer());
        }
        if (!node) {
          // The identifier comes first; without it nothing can be attributed.
          rejected = true;
          log.warn({ peer: call.getPeer() }, "stats message without a node identifier; stream closed");
          callback({ code: grpc.status.INVALID_ARGUMENT, details: "the first StreamMetricsMessage must carry identifier.node" });
          return;
        }
        const at = Date.now();
        sink.heard(node, at);
        const counters = message.metrics.filter((m) => m.kind === "counter");
        const failures = failureDeltas.next(counters);
        const stuckWorkers = watchdogDeltas.next(counters);
        if (failures.size > 0 || stuckWorkers.size > 0) sink.report({ node, failures, stuckWorkers, at });
      });
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        if (!node) return;
        log.info({ node: node.id, cluster: node.cluster }, "Envoy stats stream closed");
        sink.closed(node);
      };
      call.on("end", () => {
        finish();
        if (!rejected) callback(null, {});
      });
      call.on("cancelled", finish);
      call.on("error", finish);
    },
  });
}
