// envoy.service.metrics.v3.MetricsService on the control plane's gRPC (xDS) server: Envoy's
// `envoy.stat_sinks.metrics_service` streams its stats here every stats_flush_interval
// (envoy-bootstrap/envoy.yaml). We read only the Wasm plugins' failure counters and report
// their increases per node; nothing is answered until Envoy closes the stream (the service
// defines an empty response Envoy does not wait for).
//
// Who may report for a node: the call is authenticated first (xds/auth.ts, like every xDS call),
// and its reports count only once the node named in its first message has a live xDS stream
// over the same connection (the same peer address:port). Envoy sends its stat sink and its ADS
// stream over its one HTTP/2 connection to xds_cluster (measured on Envoy 1.40,
// test/e2e/forged-stats.test.ts), so only that Envoy can report as that node; anyone else would
// need to own its TCP connection. The binding is checked on every message until it holds (the
// sink may open before the ADS stream's first request); from then on it holds for the life of
// the stream (the connection, and so the Envoy behind it, cannot change under a stream).
// Messages before that are dropped, counted (sink.dropped) and logged once per stream; the first
// one still sets the counters' baseline, and later ones are not folded in, so a real Envoy's
// failures reported while unbound are counted by its first bound message (counters are cumulative).
import * as grpc from "@grpc/grpc-js";
import type { XdsAuth } from "../xds/auth.ts";
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
  /** A message from a stream not (yet) bound to its node's xDS connection, dropped. */
  dropped(node: SinkNode, peer: string, at: number): void;
}

export interface MetricsServiceOptions {
  /** Checked on every call before its first message is read (xds/auth.ts); absent: no check. */
  auth?: XdsAuth;
  /**
   * True when `node` has a live xDS stream from `peer` (ClientRegistry.hasStream); absent: every
   * stream counts (unit tests of the decoding only).
   */
  bound?: (node: SinkNode, peer: string) => boolean;
}

/** Adds the metrics service to `server` (before it binds). */
export function addMetricsService(server: grpc.Server, sink: MetricsServiceSink, log: MetricsServiceLog, opts: MetricsServiceOptions = {}): void {
  server.addService(definition, {
    StreamMetrics: (call: grpc.ServerReadableStream<SinkMessage, Record<string, never>>, callback: grpc.sendUnaryData<Record<string, never>>) => {
      const denied = opts.auth?.check(call, METRICS_SERVICE_PATH);
      if (denied) return callback(denied);
      const peer = call.getPeer();
      let node: SinkNode | undefined;
      let rejected = false;
      /** Bound to the node's xDS connection (sink.opened called); stays so for the stream's life. */
      let bound = false;
      let messages = 0;
      let droppedHere = 0;
      const failureDeltas = new CounterDeltas(failurePlugin);
      const watchdogDeltas = new CounterDeltas(stuckWorker);
      call.on("data", (message: SinkMessage) => {
        if (rejected) return;
        if (message.node && !node) node = message.node;
        if (!node) {
          // The identifier comes first; without it nothing can be attributed.
          rejected = true;
          log.warn({ peer }, "stats message without a node identifier; stream closed");
          callback({ code: grpc.status.INVALID_ARGUMENT, details: "the first StreamMetricsMessage must carry identifier.node" });
          return;
        }
        const at = Date.now();
        const counters = message.metrics.filter((m) => m.kind === "counter");
        const first = messages++ === 0;
        if (!bound && (opts.bound?.(node, peer) ?? true)) {
          bound = true;
          log.info({ node: node.id, cluster: node.cluster, peer, droppedBefore: droppedHere }, "Envoy stats stream opened");
          sink.opened(node, peer);
        }
        if (!bound) {
          // The baseline only: later unbound messages are not folded in (see the top of the file).
          if (first) {
            failureDeltas.next(counters);
            watchdogDeltas.next(counters);
          }
          if (droppedHere++ === 0) {
            log.warn({ node: node.id, cluster: node.cluster, peer },
              "stats dropped: this node has no xDS stream over the same connection (reports count only from the Envoy connected as that node)");
          }
          sink.dropped(node, peer, at);
          return;
        }
        sink.heard(node, at);
        const failures = failureDeltas.next(counters);
        const stuckWorkers = watchdogDeltas.next(counters);
        if (failures.size > 0 || stuckWorkers.size > 0) sink.report({ node, failures, stuckWorkers, at });
      });
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        if (!node || !bound) return;
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
