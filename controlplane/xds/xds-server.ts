import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { TlsMaterial } from "../tls.ts";
import type { XdsAuth } from "./auth.ts";
import type { NodeKey, SnapshotCache } from "./cache.ts";
import type { ClientRegistry, ClientStatus } from "./client-status.ts";
import { DeltaSession } from "./delta-session.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import { discoveryLoaderOptions } from "./protos.ts";
import type { ConfigSourceKind } from "./resources.ts";
import { ProtocolError, type SessionLog } from "./session-common.ts";
import { SotwSession } from "./sotw-session.ts";
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from "./wire.ts";
import { Outbound, resetStream, responseBytes, type WriteLimits } from "./write-budget.ts";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, PUSH_ORDER, ROUTE, shortName } from "./type-urls.ts";

export interface XdsServerOptions {
  cache: SnapshotCache;
  clients: ClientRegistry;
  fetches: FetchTracker;
  log: SessionLog & {
    error(obj: object, msg: string): void;
    debug?(obj: object, msg: string): void;
    isLevelEnabled?(level: string): boolean;
  };
  /** Concurrent streams one HTTP/2 connection may open (Envoy uses one for ADS, a few per-type). */
  maxStreamsPerConnection?: number;
  /** Bounds on what one Delta stream may have queued (write-budget.ts); the defaults suit Envoy. */
  writeLimits?: WriteLimits;
  /** Checked on every call before anything is read or sent (auth.ts); absent: no check (loopback only). */
  auth?: XdsAuth;
  /** How long one turn of the event loop may spend waking streams after a change (WakeQueue). */
  wakeSliceMs?: number;
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
    out.set(s.service, withWireCodec(s, def as unknown as grpc.ServiceDefinition));
  }
  return out;
}

/**
 * The streaming methods with our own codec (wire.ts): a response the stream already encoded
 * (a Buffer) goes out as is, and requests decode without proto-loader's object conversion.
 * The unary Fetch methods keep proto-loader's codec.
 */
function withWireCodec(s: (typeof SERVICES)[number], def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = { ...def };
  for (const [method, decode] of [[s.sotw, decodeDiscoveryRequest], [s.delta, decodeDeltaDiscoveryRequest]] as const) {
    const m = def[method];
    if (!m) throw new Error(`method ${method} missing from ${s.service}`);
    const serialize = m.responseSerialize;
    out[method] = {
      ...m,
      requestDeserialize: decode,
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)),
    };
  }
  return out as grpc.ServiceDefinition;
}

/**
 * Wakes streams after a snapshot change a slice at a time, so that the first responses reach
 * their sockets (and their ACKs come back) while later streams are still being rendered: one
 * synchronous pass over 5,000 streams held every byte back for a second. A stream woken again
 * before its turn is handled once, against the snapshot current then.
 */
class WakeQueue {
  private readonly pending = new Set<() => void>();
  private scheduled = false;

  constructor(private readonly sliceMs: number) {}

  add(wake: () => void): void {
    this.pending.add(wake);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  remove(wake: () => void): void {
    this.pending.delete(wake);
  }

  private drain(): void {
    const until = performance.now() + this.sliceMs;
    try {
      for (const wake of this.pending) {
        this.pending.delete(wake);
        wake();
        if (performance.now() >= until) break;
      }
    } finally {
      // A wake that threw (its stream is ended by its own handler) must not stall the others.
      if (this.pending.size > 0) setImmediate(() => this.drain());
      else this.scheduled = false;
    }
  }
}

interface Session<Req> {
  client: ClientStatus;
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
  /** The cache's key for a stream's Envoy: who it is, and whether it takes only ECDS from us (docs/ecds-only.md). */
  const nodeKey = (client: ClientStatus): NodeKey =>
    ({ id: client.nodeId, cluster: client.nodeCluster, ecdsOnly: !opts.clients.usesOurRoutes(client) });
  const wakes = new WakeQueue(opts.wakeSliceMs ?? 10);

  function bind<Req, Res extends { type_url: string; nonce: string }>(
    call: grpc.ServerDuplexStream<Req, Res>,
    make: (streamId: number, peer: string, send: (r: Res) => void, types: readonly string[]) => Session<Req>,
    types: readonly string[],
    variant: "sotw" | "delta",
    encode: (r: Res) => Buffer,
  ): void {
    const denied = opts.auth?.check(call, call.getPath());
    if (denied) return void call.emit("error", denied);
    const streamId = nextStreamId++;
    let ended = false;
    // Encoded when handed to grpc-js (the method's serializer passes Buffers through), so a SotW
    // response superseded in the queue is never encoded.
    // One response at a time to grpc-js; SotW keeps only the newest queued per type (write-budget.ts).
    const outbound = new Outbound<Res>(
      (r, done) => void call.write(encode(r) as unknown as Res, done),
      variant === "sotw",
      opts.writeLimits,
    );
    // Methods of one object rather than named arrows: under tsx (esbuild keepNames) each named
    // arrow made per stream carries its own `name` property store (see GroupRejections, cache.ts).
    const stream = {
      send(r: Res): void {
        if (ended) return;
        if (!outbound.push(r)) return stream.dropSlow(r);
        opts.log.info({ stream: streamId, node: session.client.nodeId, variant, type: shortName(r.type_url), nonce: r.nonce }, "xDS push");
      },
      // A Delta peer that does not read what it is sent: reset its stream rather than buffer without end.
      dropSlow(r: Res): void {
        const { responses, bytes } = outbound.queued;
        opts.log.warn({
          stream: streamId, node: session.client.nodeId, peer: call.getPeer(), queuedResponses: responses, queuedBytes: bytes,
          nextBytes: responseBytes(r as { resources?: readonly unknown[] }),
        }, "xDS stream does not keep up with its responses; resetting it");
        opts.clients.slowStreamClosed();
        stream.finish();
        if (!resetStream(call as grpc.ServerDuplexStream<unknown, unknown>)) {
          call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "the stream does not read its responses" });
        }
      },
      // Node-aware: each stream reads its own Envoy's snapshot and diffs it against what it saw.
      wake(): void {
        if (ended || !session.client.nodeId) return;
        const snapshot = opts.cache.getFor(nodeKey(session.client));
        if (snapshot) session.handleSnapshot(snapshot);
      },
      finish(): void {
        if (ended) return;
        ended = true;
        unwatch();
        wakes.remove(stream.wake);
        session.close();
        opts.log.info({ stream: streamId, node: session.client.nodeId }, "xDS stream closed");
      },
    };
    const session = make(streamId, call.getPeer(), stream.send, types);
    // Queued, not run: see WakeQueue.
    const unwatch = opts.cache.watch(() => wakes.add(stream.wake));
    const finish = stream.finish;
    call.on("data", (req: Req) => {
      if (ended) return;
      // Summarised only when written: every ACK of every stream passes here.
      if (opts.log.debug && (opts.log.isLevelEnabled?.("debug") ?? true)) {
        opts.log.debug({ stream: streamId, node: session.client.nodeId, variant, request: summarize(req) }, "xDS request");
      }
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
    snapshot() {
      return opts.cache.getFor(node());
    },
    ecdsOnly() {
      return node().ecdsOnly === true;
    },
    types,
    source,
  });

  for (const s of SERVICES) {
    const impl: grpc.UntypedServiceImplementation = {
      [s.sotw]: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) =>
        bind(call, (id, peer, send, types) => {
          const source = s.types.length > 1 ? "ads" : "grpc";
          const session: SotwSession = new SotwSession(id, peer, { ...deps(types, source, () => nodeKey(session.client)), send });
          return session;
        }, s.types, "sotw", encodeDiscoveryResponse),
      [s.delta]: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) =>
        bind(call, (id, peer, send, types) => {
          const source = s.types.length > 1 ? "ads" : "delta_grpc";
          const session: DeltaSession = new DeltaSession(id, peer, { ...deps(types, source, () => nodeKey(session.client)), send });
          return session;
        }, s.types, "delta", encodeDeltaDiscoveryResponse),
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
    const v = r[k];
    // Decoded requests read "", [] or {} for what is unset (wire.ts): left out.
    if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0) continue;
    out[k] = v;
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
