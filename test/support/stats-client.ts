/**
 * A raw client of the control plane's MetricsService (envoy.service.metrics.v3.MetricsService),
 * writing what Envoy's metrics_service stat sink writes: the node in the first message, then
 * cumulative counters every flush. For tests that play a client other than Envoy.
 */
import * as grpc from "@grpc/grpc-js";
import { METRICS_SERVICE_PATH } from "../../controlplane/health/metrics-service.ts";
import { encodeStreamMetricsMessage, type SinkMessage } from "../../controlplane/health/metrics-wire.ts";
import { waitFor } from "./wait.ts";

export interface StatsStream {
  write(m: SinkMessage): void;
  /** Waits for the call's final status without half-closing (null: OK); fails after timeoutMs. */
  ended(timeoutMs?: number): Promise<grpc.ServiceError | null>;
  /** Half-closes and resolves with the final status. */
  end(timeoutMs?: number): Promise<grpc.ServiceError | null>;
  cancel(): void;
}

/**
 * Opens one StreamMetrics call on `client` (a grpc.Client, or any client whose channel it
 * should share: pass `new grpc.Client(addr, creds, { channelOverride: other.getChannel() })`),
 * sending `metadata` (e.g. the xDS token) as its initial metadata.
 */
export function openStatsStream(client: grpc.Client, metadata = new grpc.Metadata()): StatsStream {
  let settle!: (e: grpc.ServiceError | null) => void;
  const result = new Promise<grpc.ServiceError | null>((resolve) => (settle = resolve));
  const call = client.makeClientStreamRequest(
    METRICS_SERVICE_PATH,
    (m: SinkMessage) => Buffer.from(encodeStreamMetricsMessage(m)),
    (b: Buffer) => b,
    metadata,
    (err) => settle(err),
  );
  let status: grpc.ServiceError | null | undefined;
  void result.then((s) => (status = s));
  return {
    write: (m) => {
      if (status === undefined) call.write(m);
    },
    async ended(timeoutMs = 5000) {
      await waitFor(() => status !== undefined, { what: "the stats stream's final status", timeoutMs, intervalMs: 10 });
      return status ?? null;
    },
    end(timeoutMs = 5000) {
      call.end();
      return this.ended(timeoutMs);
    },
    cancel: () => call.cancel(),
  };
}

/** Metadata carrying `authorization: Bearer <token>` (what the bootstrap's initial_metadata sends). */
export function bearer(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
}
