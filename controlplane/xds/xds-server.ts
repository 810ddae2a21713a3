import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { TlsMaterial } from "../tls.ts";
import type { XdsAuth } from "./auth.ts";
import type { NodeKey, SnapshotCache } from "./cache.ts";
import type { ClientRegistry } from "./client-status.ts";
import { DeltaSession } from "./delta-session.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import { discoveryLoaderOptions } from "./protos.ts";
import type { ConfigSourceKind } from "./resources.ts";
import { ProtocolError, type SessionLog } from "./session-common.ts";
import { SotwSession } from "./sotw-session.ts";
import { Outbound, resetStream, responseBytes, type WriteLimits } from "./write-budget.ts";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, PUSH_ORDER, ROUTE, shortName } from "./type-urls.ts";

export interface XdsServerOptions {
  cache: SnapshotCache;
  clients: ClientRegistry;
  fetches: FetchTracker;
  log: SessionLog & { error(obj: object, msg: string): void; debug?(obj: object, msg: string): void };
  /** Concurrent streams one HTTP/2 connection may open (Envoy uses one for ADS, a few per-type). */
  maxStreamsPerConnection?: number;
  /** Bounds on what one Delta stream may have queued (write-budget.ts); the defaults suit Envoy. */
  writeLimits?: WriteLimits;
  /** Checked on every call before anything is read or sent (auth.ts); absent: no check (loopback only). */
  auth?: XdsAuth;
}

/** Every discovery service Envoy can be pointed at, with the types each one serves. */
const SERVICES: readonly { proto: string; service: string; sotw: string; delta: string; fetch?: string; types: readonly string[] }[] = [
  { proto: "envoy/service/discovery/v3/ads.proto", service: "envoy.service.discovery.v3.AggregatedDiscoveryService", sotw: "StreamAggregatedResources", delta: "DeltaAggregatedResources", types: PUSH_ORDER },
  { proto: "envoy/service/listener/v3/lds.proto", service: "envoy.service.listener.v3.ListenerDiscoveryService", sotw: "StreamListeners", delta: "DeltaListeners", fetch: "FetchListeners", types: [LISTENER] },
  { proto: "envoy/service/route/v3/rds.proto", service: "envoy.service.route.v3.RouteDiscoveryService", sotw: "StreamRoutes", delta: "DeltaRoutes", fetch: "FetchRoutes", types: [ROUTE] },
  { proto: "envoy/service/cluster/v3/cds.proto", service: "envoy.service.cluster.v3.ClusterDiscoveryService", sotw: "StreamClusters", delta: "DeltaClusters", fetch: "FetchClusters", types: [CLUSTER] },
  { proto: "envoy/service/endpoint/v3/eds.proto", service: "envoy.service.endpoint.v3.EndpointDiscoveryService", sotw: "StreamEndpoints", delta: "DeltaEndpoints", fetch: "FetchEndpoints", types: [ENDPOINT] },
  { proto: "envoy/service/extension/v3/config_discovery.proto", service: "envoy.service.extension.v3.ExtensionConfigDiscoveryService", sotw: "StreamExtensionConfigs", delta: "DeltaExtensionConfigs", fetch: "FetchExtensionConfigs", types: [EXTENSION_CONFIG] },
];

function loadServices(): Map<string, grpc.ServiceDefinition> {
  const definition = protoLoader.loadSync(SERVICES.map((s) => s.proto), discoveryLoaderOptions());
  const out = new Map<string, grpc.ServiceDefinition>();
  for (const s of SERVICES) {
    const def = definition[s.service];
    if (!def) throw new Error(`service ${s.service} missing from ${s.proto}`);
    out.set(s.service, def as unknown as grpc.ServiceDefinition);
  }
  return out;
}

interface Session<Req> {
  client: { nodeId: string; nodeCluster: string };
  handleRequest(req: Req): void;
  handleSnapshot(snapshot: NonNullable<ReturnType<SnapshotCache["get"]>>): void;
  close(): void;
}

/**
 * One gRPC server with every discovery service bound to the same cache. A service binding is
 * thin: it creates a session (SotW or Delta) limited to the service's types and feeds it.
 */
export function createXdsServer(opts: XdsServerOptions): grpc.Server {
  const server = new grpc.Server({
    // Envoy keeps streams open for hours; keepalive finds dead peers behind NAT/docker.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    // Envoy's bootstrap pings every 30 s (http2 connection_keepalive): allow it.
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.max_concurrent_streams": opts.maxStreamsPerConnection ?? 128,
  });
  let nextStreamId = 1;
  const services = loadServices();

  function bind<Req, Res extends { type_url: string; nonce: string }>(
    call: grpc.ServerDuplexStream<Req, Res>,
    make: (streamId: number, peer: string, send: (r: Res) => void, types: readonly string[]) => Session<Req>,
    types: readonly string[],
    variant: string,
  ): void {
    const denied = opts.auth?.check(call, call.getPath());
    if (denied) return void call.emit("error", denied);
    const streamId = nextStreamId++;
    let ended = false;
    // One response at a time to grpc-js; SotW keeps only the newest queued per type (write-budget.ts).
    const outbound = new Outbound<Res>((r, done) => void call.write(r, done), variant === "sotw", opts.writeLimits);
    const send = (r: Res): void => {
      if (ended) return;
      if (!outbound.push(r)) return dropSlow(r);
      opts.log.info({ stream: streamId, node: session.client.nodeId, variant, type: shortName(r.type_url), nonce: r.nonce }, "xDS push");
    };
    // A Delta peer that does not read what it is sent: reset its stream rather than buffer without end.
    const dropSlow = (r: Res): void => {
      const { responses, bytes } = outbound.queued;
      opts.log.warn({
        stream: streamId, node: session.client.nodeId, peer: call.getPeer(), queuedResponses: responses, queuedBytes: bytes,
        nextBytes: responseBytes(r as { resources?: readonly unknown[] }),
      }, "xDS stream does not keep up with its responses; resetting it");
      opts.clients.slowStreamClosed();
      finish();
      if (!resetStream(call as grpc.ServerDuplexStream<unknown, unknown>)) {
        call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "the stream does not read its responses" });
      }
    };
    const session = make(streamId, call.getPeer(), send, types);
    // Node-aware: each stream reads its own Envoy's snapshot and diffs it against what it saw.
    const unwatch = opts.cache.watch(() => {
      if (!session.client.nodeId) return;
      const snapshot = opts.cache.getFor({ id: session.client.nodeId, cluster: session.client.nodeCluster });
      if (snapshot) session.handleSnapshot(snapshot);
    });
    const finish = (): void => {
      if (ended) return;
      ended = true;
      unwatch();
      session.close();
      opts.log.info({ stream: streamId, node: session.client.nodeId }, "xDS stream closed");
    };
    call.on("data", (req: Req) => {
      if (ended) return;
      opts.log.debug?.({ stream: streamId, node: session.client.nodeId, variant, request: summarize(req) }, "xDS request");
      try {
        session.handleRequest(req);
      } catch (err) {
        const protocol = err instanceof ProtocolError;
        if (protocol) opts.log.warn({ stream: streamId, error: err.message }, "xDS protocol error; closing stream");
        else opts.log.error({ stream: streamId, err }, "xDS request handling failed");
        finish();
        call.emit("error", { code: protocol ? err.grpcCode : grpc.status.INTERNAL, details: protocol ? err.message : String(err) });
      }
    });
    // Half-close: the client is done sending; end our side too.
    call.on("end", () => {
      finish();
      call.end();
    });
    call.on("cancelled", finish);
    call.on("error", finish);
  }

  const deps = (types: readonly string[], source: ConfigSourceKind, node: () => NodeKey) => ({
    registry: opts.clients,
    fetches: opts.fetches,
    log: opts.log,
    // NACKs count for the Envoy's node group only (cache.ts RejectionView).
    rejections: opts.cache.rejectionsFor(() => opts.cache.groupOf(node())),
    snapshot: () => opts.cache.getFor(node()),
    types,
    source,
  });

  for (const s of SERVICES) {
    const impl: grpc.UntypedServiceImplementation = {
      [s.sotw]: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) =>
        bind(call, (id, peer, send, types) => {
          const session: SotwSession = new SotwSession(id, peer, { ...deps(types, s.types.length > 1 ? "ads" : "grpc", () => ({ id: session.client.nodeId, cluster: session.client.nodeCluster })), send });
          return session;
        }, s.types, "sotw"),
      [s.delta]: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) =>
        bind(call, (id, peer, send, types) => {
          const session: DeltaSession = new DeltaSession(id, peer, { ...deps(types, s.types.length > 1 ? "ads" : "delta_grpc", () => ({ id: session.client.nodeId, cluster: session.client.nodeCluster })), send });
          return session;
        }, s.types, "delta"),
    };
    if (s.fetch) {
      impl[s.fetch] = (call: grpc.ServerUnaryCall<DiscoveryRequest, DiscoveryResponse>, callback: grpc.sendUnaryData<DiscoveryResponse>) => {
        const denied = opts.auth?.check(call, call.getPath());
        if (denied) return callback(denied);
        const typeUrl = call.request.type_url || s.types[0]!;
        const current = opts.cache.getFor({ id: call.request.node?.id ?? "", cluster: call.request.node?.cluster ?? "" })?.types.get(typeUrl);
        if (!s.types.includes(typeUrl)) return callback({ code: grpc.status.INVALID_ARGUMENT, details: `type_url ${typeUrl} is not served by ${s.service}` });
        if (!current) return callback({ code: grpc.status.UNAVAILABLE, details: "no snapshot yet" });
        const names = call.request.resource_names ?? [];
        const resources = [...current.resources.values()].filter((r) => names.length === 0 || names.includes(r.name));
        callback(null, { version_info: current.version, type_url: typeUrl, nonce: "", resources: resources.map((r) => r.anyFor({ nodeId: call.request.node?.id ?? "", nackOnCacheMiss: false, source: "grpc" })) });
      };
    }
    server.addService(services.get(s.service)!, impl);
  }
  return server;
}

/**
 * Binds the xDS port: plaintext, or TLS with `tls` (CP_TLS_CERT, CP_TLS_KEY). With
 * `tls.clientCa` (CP_TLS_CLIENT_CA) a client must present a certificate signed by it (mTLS):
 * a handshake without one fails, so such an Envoy never opens a stream.
 */
/** The parts of a request worth a debug line (never the node's full metadata). */
function summarize(req: unknown): Record<string, unknown> {
  const r = req as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of ["type_url", "version_info", "response_nonce", "resource_names", "resource_names_subscribe", "resource_names_unsubscribe", "initial_resource_versions"]) {
    if (r[k] !== undefined && !(Array.isArray(r[k]) && (r[k] as unknown[]).length === 0)) out[k] = r[k];
  }
  const err = r.error_detail as { message?: string } | null | undefined;
  if (err) out.error = err.message;
  return out;
}

export function listenXds(server: grpc.Server, host: string, port: number, tls?: TlsMaterial): Promise<number> {
  const credentials = tls
    ? grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined)
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => {
      if (err) reject(new Error(`cannot listen for xDS on ${host}:${port}: ${err.message}`));
      else resolve(bound);
    });
  });
}
