// Prometheus metrics of the control plane, on a prom-client Registry per admin app (never the
// global one: tests create several apps in one process). Counters and histograms are driven by
// the EventBus; gauges and the counters ClientRegistry already keeps are read at scrape time.
// Nothing here changes xDS code: it only subscribes and reads.
//
//   wasmxds_builds_total{result}               builds finished, result="success"|"failure"
//   wasmxds_build_duration_seconds{result}     compile + validate time of each build (buildMs)
//   wasmxds_snapshots_published_total          snapshot publishes that changed some type
//   wasmxds_xds_pushes_total{type}             xDS responses sent, type=CDS|EDS|LDS|RDS|ECDS
//                                              (re-sends after a code-cache miss included)
//   wasmxds_xds_acks_total{type}               responses Envoys ACKed
//   wasmxds_xds_nacks_total{type}              responses Envoys rejected (ClientRegistry count;
//                                              an ECDS code-cache miss is not a rejection)
//   wasmxds_xds_cache_miss_resends_total       ECDS configs re-sent after an Envoy fetched a module
//   wasmxds_xds_push_to_ack_seconds{type}      per stream: first push of a version to its ACK
//   wasmxds_propagation_seconds                build.started of a filter's new module to each
//                                              Envoy's ECDS ACK naming its sha256 (see
//                                              events/propagation.ts for exactly which Envoys)
//   wasmxds_propagation_first_ack_seconds      the same, to the first Envoy's ACK per change
//   wasmxds_module_downloads_total             module downloads completed by the module server
//   wasmxds_module_bytes_served_total          bytes of those downloads
//   wasmxds_xds_streams                        open xDS streams (gauge)
//   wasmxds_xds_envoys                         connected Envoys: distinct node id + cluster (gauge)
//   wasmxds_filters{status}                    filters by build status, ok|building|error (gauge)

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ControlPlaneEvent, EventBus } from "../events/bus.ts";
import { AckLatencyTracker, PropagationTracker } from "../events/propagation.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { ClientRegistry, ClientStatus } from "../xds/client-status.ts";
import type { EncodedResource } from "../xds/snapshot.ts";
import { EXTENSION_CONFIG, PUSH_ORDER, shortName } from "../xds/type-urls.ts";

export interface MetricsSources {
  registry: FilterRegistry;
  clients: ClientRegistry;
  /** Without a bus only the scrape-time metrics move. */
  events?: EventBus;
  /** A served resource by version: tells which module sha256 an ACKed ECDS version names. */
  resourceAt?: (typeUrl: string, name: string, version: string) => EncodedResource | undefined;
}

const BUILD_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30];
const ACK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const PROPAGATION_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60];
const BUILD_RESULTS = ["success", "failure"] as const;
const STATUSES = ["ok", "building", "error"] as const;

const atMs = (event: ControlPlaneEvent): number => Date.parse(event.at);

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  private readonly unsubscribe: () => void;

  constructor(sources: MetricsSources) {
    const { clients } = sources;
    const registers = [this.registry];
    const types = PUSH_ORDER.map(shortName);

    const builds = new Counter({ name: "wasmxds_builds_total", help: "Filter builds finished, by result (success|failure).", labelNames: ["result"], registers });
    const buildSeconds = new Histogram({ name: "wasmxds_build_duration_seconds", help: "Compile and validate time of each filter build, by result.", labelNames: ["result"], buckets: BUILD_BUCKETS, registers });
    const publishes = new Counter({ name: "wasmxds_snapshots_published_total", help: "Snapshot publishes that changed at least one resource type.", registers });
    const pushes = new Counter({ name: "wasmxds_xds_pushes_total", help: "xDS responses sent to Envoys, by type (re-sends after a code-cache miss included).", labelNames: ["type"], registers });
    const acks = new Counter({ name: "wasmxds_xds_acks_total", help: "xDS responses Envoys accepted (ACK), by type.", labelNames: ["type"], registers });
    const pushToAck = new Histogram({ name: "wasmxds_xds_push_to_ack_seconds", help: "Per stream, from the first push of a version to the ACK of that version, by type (ECDS includes a module download after a code-cache miss).", labelNames: ["type"], buckets: ACK_BUCKETS, registers });
    const propagation = new Histogram({ name: "wasmxds_propagation_seconds", help: "From build.started of a filter change to each Envoy's ECDS ACK of a config naming the new module (Envoys connected when the build succeeded).", buckets: PROPAGATION_BUCKETS, registers });
    const propagationFirst = new Histogram({ name: "wasmxds_propagation_first_ack_seconds", help: "From build.started of a filter change to the first Envoy's ECDS ACK of a config naming the new module.", buckets: PROPAGATION_BUCKETS, registers });
    const downloads = new Counter({ name: "wasmxds_module_downloads_total", help: "Module downloads the module server completed.", registers });
    const bytesServed = new Counter({ name: "wasmxds_module_bytes_served_total", help: "Bytes of module downloads the module server completed.", registers });
    for (const result of BUILD_RESULTS) {
      builds.inc({ result }, 0);
      buildSeconds.zero({ result });
    }
    for (const type of types) {
      pushes.inc({ type }, 0);
      acks.inc({ type }, 0);
      pushToAck.zero({ type });
    }

    // Scrape-time: ClientRegistry keeps these since start (and /api/clients shows the same counts).
    new Counter({
      name: "wasmxds_xds_nacks_total", help: "Responses Envoys rejected (NACK), by type.", labelNames: ["type"], registers,
      collect() {
        this.reset();
        for (const t of PUSH_ORDER) this.inc({ type: shortName(t) }, clients.nacksByType.get(t) ?? 0);
      },
    });
    new Counter({
      name: "wasmxds_xds_cache_miss_resends_total", help: "ECDS configs re-sent after an Envoy fetched a new module.", registers,
      collect() {
        this.reset();
        this.inc(clients.cacheMissResends);
      },
    });
    new Counter({
      name: "wasmxds_xds_slow_streams_reset_total", help: "xDS streams reset because the peer did not read its responses.", registers,
      collect() {
        this.reset();
        this.inc(clients.slowStreamsClosed);
      },
    });
    new Gauge({ name: "wasmxds_xds_streams", help: "Open xDS streams.", registers, collect() {
      this.set(clients.list().length);
    } });
    new Gauge({ name: "wasmxds_xds_envoys", help: "Connected Envoys (distinct node id and cluster).", registers, collect() {
      this.set(new Set(clients.list().map((c) => `${c.nodeId}\n${c.nodeCluster}`)).size);
    } });
    new Gauge({ name: "wasmxds_filters", help: "Filters by build status.", labelNames: ["status"], registers, collect() {
      const counts = new Map<string, number>(STATUSES.map((s) => [s, 0]));
      for (const f of sources.registry.list()) counts.set(f.status, (counts.get(f.status) ?? 0) + 1);
      this.reset();
      for (const [status, n] of counts) this.set({ status }, n);
    } });

    const ackedModule = (c: ClientStatus | undefined, filter: string): string | undefined => {
      const version = c?.types.get(EXTENSION_CONFIG)?.ackedResources?.[filter];
      return version === undefined ? undefined : sources.resourceAt?.(EXTENSION_CONFIG, filter, version)?.moduleSha256;
    };
    const tracker = new PropagationTracker({
      ecdsStreams: () => clients.list().filter((c) => c.types.has(EXTENSION_CONFIG)).map((c) => ({ stream: c.streamId, ackedModule: (filter: string) => ackedModule(c, filter) })),
      ackedModule: (stream, filter) => ackedModule(clients.list().find((c) => c.streamId === stream), filter),
    }, {
      each: (seconds) => propagation.observe(seconds),
      first: (seconds) => propagationFirst.observe(seconds),
    });
    const ackLatency = new AckLatencyTracker((seconds, typeUrl) => pushToAck.observe({ type: shortName(typeUrl) }, seconds));

    const onEvent = (e: ControlPlaneEvent): void => {
      switch (e.type) {
        case "build.started":
          tracker.buildStarted(e.filter, atMs(e));
          break;
        case "build.succeeded":
          builds.inc({ result: "success" });
          buildSeconds.observe({ result: "success" }, e.buildMs / 1000);
          tracker.buildSucceeded(e.filter, e.sha256, atMs(e));
          break;
        case "build.failed":
          builds.inc({ result: "failure" });
          buildSeconds.observe({ result: "failure" }, e.buildMs / 1000);
          tracker.buildFailed(e.filter);
          break;
        case "filter.removed":
          tracker.filterRemoved(e.filter);
          break;
        case "snapshot.published":
          publishes.inc();
          break;
        case "xds.pushed":
          pushes.inc({ type: shortName(e.typeUrl) });
          ackLatency.pushed(e.stream, e.typeUrl, e.version, atMs(e));
          break;
        case "xds.acked": {
          acks.inc({ type: shortName(e.typeUrl) });
          ackLatency.acked(e.stream, e.typeUrl, e.version, atMs(e));
          if (e.typeUrl === EXTENSION_CONFIG) {
            // A SotW session records what the ACK covers right after emitting the event, in the
            // same synchronous step: read it a microtask later.
            const { stream } = e;
            const at = atMs(e);
            queueMicrotask(() => tracker.ecdsAcked(stream, at));
          }
          break;
        }
        case "xds.nacked":
          ackLatency.nacked(e.stream, e.typeUrl, e.version);
          break;
        case "client.disconnected":
          tracker.streamClosed(e.stream);
          ackLatency.streamClosed(e.stream);
          break;
        case "module.served":
          downloads.inc();
          bytesServed.inc(e.bytes);
          break;
        default:
          break;
      }
    };
    this.unsubscribe = sources.events?.subscribe(onEvent) ?? (() => undefined);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops following the bus (the admin app closed). */
  close(): void {
    this.unsubscribe();
  }
}

/** The scrape-time metrics only (no bus): NACKs, re-sends, streams, Envoys, filters. */
export function renderMetrics(registry: FilterRegistry, clients: ClientRegistry): Promise<string> {
  return new ControlPlaneMetrics({ registry, clients }).render();
}
