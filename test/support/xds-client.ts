/**
 * Raw gRPC xDS clients and an in-process control plane for protocol tests: a real
 * `createXdsServer` on an ephemeral port, and SotW / Delta / Fetch clients for every
 * discovery service, speaking to it the way Envoy does (nothing here mimics server logic).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { adsClientConstructor } from "../../bench/support/sim-envoy.ts";
import { FetchTracker } from "../../controlplane/registry/fetch-tracker.ts";
import { SnapshotCache } from "../../controlplane/xds/cache.ts";
import { ClientRegistry, type ClientStatus, type TypeStatus } from "../../controlplane/xds/client-status.ts";
import { decodeMessage, type AnyMessage, type ResourceObject } from "../../controlplane/xds/codec.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse } from "../../controlplane/xds/discovery-types.ts";
import { discoveryLoaderOptions } from "../../controlplane/xds/protos.ts";
import { buildResources, type FilterResourceSpec, type HostPort } from "../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../controlplane/xds/snapshot.ts";
import { createXdsServer, listenXds } from "../../controlplane/xds/xds-server.ts";
import { waitFor } from "./wait.ts";

/** Default deadline for a response that must arrive (local loopback: milliseconds in practice). */
export const RESPONSE_TIMEOUT_MS = 3000;
/** Probe interval: tests wait on in-process state, so poll tightly. */
const POLL_MS = 5;

// ---------------------------------------------------------------------------------------------
// Snapshots

export interface SnapshotInputs {
  listenerPort?: number;
  upstream?: HostPort;
  moduleServer?: HostPort;
  filters?: readonly FilterResourceSpec[];
}

/** A 64-hex sha256 made of one repeated hex digit (distinct digits, distinct modules). */
export const sha = (digit: string): string => digit.repeat(64);

export function filterSpec(name: string, shaDigit = "a", enabled = true): FilterResourceSpec {
  return { name, sha256: sha(shaDigit), rootId: `${name}_root`, enabled };
}

export function snapshotOf(inputs: SnapshotInputs = {}): Snapshot {
  return encodeSnapshot(buildResources({
    listener: { address: "127.0.0.1", port: inputs.listenerPort ?? 10000 },
    upstream: inputs.upstream ?? { host: "127.0.0.1", port: 8080 },
    moduleServer: inputs.moduleServer ?? { host: "127.0.0.1", port: 18080 },
    filters: inputs.filters ?? [filterSpec("f1", "a"), filterSpec("f2", "b")],
  }));
}

// ---------------------------------------------------------------------------------------------
// gRPC clients

export type ServiceKey = "ads" | "lds" | "rds" | "cds" | "eds" | "ecds";

const SERVICES: Record<Exclude<ServiceKey, "ads">, { proto: string; path: string[]; sotw: string; delta: string; fetch: string }> = {
  lds: { proto: "envoy/service/listener/v3/lds.proto", path: ["envoy", "service", "listener", "v3", "ListenerDiscoveryService"], sotw: "StreamListeners", delta: "DeltaListeners", fetch: "FetchListeners" },
  rds: { proto: "envoy/service/route/v3/rds.proto", path: ["envoy", "service", "route", "v3", "RouteDiscoveryService"], sotw: "StreamRoutes", delta: "DeltaRoutes", fetch: "FetchRoutes" },
  cds: { proto: "envoy/service/cluster/v3/cds.proto", path: ["envoy", "service", "cluster", "v3", "ClusterDiscoveryService"], sotw: "StreamClusters", delta: "DeltaClusters", fetch: "FetchClusters" },
  eds: { proto: "envoy/service/endpoint/v3/eds.proto", path: ["envoy", "service", "endpoint", "v3", "EndpointDiscoveryService"], sotw: "StreamEndpoints", delta: "DeltaEndpoints", fetch: "FetchEndpoints" },
  ecds: { proto: "envoy/service/extension/v3/config_discovery.proto", path: ["envoy", "service", "extension", "v3", "ExtensionConfigDiscoveryService"], sotw: "StreamExtensionConfigs", delta: "DeltaExtensionConfigs", fetch: "FetchExtensionConfigs" },
};

type ClientCtor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => grpc.Client;

let perTypeCtors: Map<string, ClientCtor> | undefined;

/** Client constructors of the per-type services (ADS comes from bench/support/sim-envoy.ts). */
function perTypeConstructor(key: Exclude<ServiceKey, "ads">): ClientCtor {
  if (!perTypeCtors) {
    const definition = protoLoader.loadSync(Object.values(SERVICES).map((s) => s.proto), discoveryLoaderOptions());
    const pkg = grpc.loadPackageDefinition(definition) as unknown as Record<string, unknown>;
    perTypeCtors = new Map();
    for (const [k, s] of Object.entries(SERVICES)) {
      let node: unknown = pkg;
      for (const part of s.path) node = (node as Record<string, unknown>)[part];
      if (typeof node !== "function") throw new Error(`service ${s.path.join(".")} missing from ${s.proto}`);
      perTypeCtors.set(k, node as ClientCtor);
    }
  }
  return perTypeCtors.get(key)!;
}

function constructorFor(key: ServiceKey): ClientCtor {
  return key === "ads" ? (adsClientConstructor() as unknown as ClientCtor) : perTypeConstructor(key);
}

function methodName(key: ServiceKey, kind: "sotw" | "delta"): string {
  if (key === "ads") return kind === "sotw" ? "StreamAggregatedResources" : "DeltaAggregatedResources";
  return SERVICES[key][kind];
}

/**
 * One bidirectional xDS stream. Every response is kept in arrival order; `next()` hands them
 * out one by one, so a test asserts exactly what arrived and in which order.
 */
export class XdsStream<Req, Res extends { type_url?: string; nonce?: string }> {
  readonly received: Res[] = [];
  private cursor = 0;
  status: grpc.StatusObject | undefined;

  constructor(readonly call: grpc.ClientDuplexStream<Req, Res>, readonly label: string) {
    call.on("data", (r: Res) => this.received.push(r));
    call.on("status", (s: grpc.StatusObject) => {
      this.status = s;
    });
    // A non-OK status also comes as "error"; `status` carries it. Without a listener it would throw.
    call.on("error", () => undefined);
  }

  send(req: Req): void {
    this.call.write(req);
  }

  /** The next unread response; fails if the stream ends first or nothing arrives in time. */
  async next(what = "the next response", timeoutMs = RESPONSE_TIMEOUT_MS): Promise<Res> {
    const r = await waitFor(() => {
      if (this.cursor < this.received.length) return { r: this.received[this.cursor]! };
      if (this.status) throw new Error(`stream ended with ${grpc.status[this.status.code]}: ${this.status.details}`);
      return undefined;
    }, { what: `${this.label}: ${what}`, timeoutMs, intervalMs: POLL_MS });
    this.cursor++;
    return r.r;
  }

  /** The next unread response, which must be of `typeUrl`. */
  async nextOf(typeUrl: string, what?: string): Promise<Res> {
    const r = await this.next(what ?? `a response of ${typeUrl}`);
    if (r.type_url !== typeUrl) {
      throw new Error(`${this.label}: expected a response of ${typeUrl}${what ? ` (${what})` : ""}, got ${r.type_url} (nonce ${r.nonce})`);
    }
    return r;
  }

  /** Responses received but not yet handed out by next(). */
  unread(): Res[] {
    return this.received.slice(this.cursor);
  }

  /** Resolves with the stream's final status (the server ended it, or it was cancelled). */
  ended(timeoutMs = RESPONSE_TIMEOUT_MS): Promise<grpc.StatusObject> {
    return waitFor(() => this.status, { what: `${this.label}: the stream to end`, timeoutMs, intervalMs: POLL_MS });
  }

  /** Half-close: the client is done sending. */
  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

export type SotwStream = XdsStream<DiscoveryRequest, DiscoveryResponse>;
export type DeltaStream = XdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

/** Client side of one connection, opening streams to any discovery service. */
export class XdsClient {
  private readonly clients = new Map<ServiceKey, grpc.Client>();
  private readonly streams: XdsStream<unknown, { type_url?: string }>[] = [];

  /** `metadata`: sent with every call (e.g. `authorization: Bearer <CP_XDS_TOKEN>`). */
  constructor(private readonly port: number, private readonly metadata = new grpc.Metadata()) {}

  private client(key: ServiceKey): grpc.Client {
    let c = this.clients.get(key);
    if (!c) {
      const Ctor = constructorFor(key);
      c = new Ctor(`127.0.0.1:${this.port}`, grpc.credentials.createInsecure());
      this.clients.set(key, c);
    }
    return c;
  }

  private open<Req, Res extends { type_url?: string; nonce?: string }>(key: ServiceKey, kind: "sotw" | "delta"): XdsStream<Req, Res> {
    const c = this.client(key) as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<Req, Res>>;
    const method = methodName(key, kind);
    const stream = new XdsStream<Req, Res>(c[method]!.call(c, this.metadata), `${key}/${method}`);
    this.streams.push(stream as unknown as XdsStream<unknown, { type_url?: string }>);
    return stream;
  }

  sotw(key: ServiceKey = "ads"): SotwStream {
    return this.open<DiscoveryRequest, DiscoveryResponse>(key, "sotw");
  }

  delta(key: ServiceKey = "ads"): DeltaStream {
    return this.open<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(key, "delta");
  }

  /** The unary Fetch* of a per-type service. */
  fetch(key: Exclude<ServiceKey, "ads">, req: DiscoveryRequest): Promise<DiscoveryResponse> {
    type Fetch = (req: DiscoveryRequest, m: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: DiscoveryResponse) => void) => void;
    const c = this.client(key) as unknown as Record<string, Fetch>;
    const method = SERVICES[key].fetch;
    return new Promise((resolve, reject) => {
      c[method]!.call(c, req, this.metadata, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  close(): void {
    for (const s of this.streams) if (!s.status) s.cancel();
    for (const c of this.clients.values()) c.close();
  }
}

// ---------------------------------------------------------------------------------------------
// In-process control plane

export interface LogLine {
  level: "info" | "warn" | "error";
  msg: string;
  obj: object;
}

export interface XdsHarness {
  port: number;
  /** This test's instances (see `reset()`). */
  readonly cache: SnapshotCache;
  readonly clients: ClientRegistry;
  readonly fetches: FetchTracker;
  /** Everything the server logged (never printed). */
  logs: LogLine[];
  /** A new client connection, closed by `close()`. */
  connect(): XdsClient;
  /** This node's stream entries in the ClientRegistry. */
  streamsOf(nodeId: string): ClientStatus[];
  /** Waits until `nodeId` has a stream whose `typeUrl` status satisfies `ok`; returns that status. */
  typeStatus(nodeId: string, typeUrl: string, ok: (t: TypeStatus) => boolean, what: string): Promise<TypeStatus>;
  /**
   * Between two tests sharing this server: closes every client, waits until the server has
   * dropped all their streams from the registry, then swaps in a fresh cache (holding the
   * initial snapshot), registry and fetch tracker, and clears the log.
   */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An object that forwards every property access to whatever `current()` returns at that
 * moment: the server keeps one reference while tests swap in fresh instances.
 */
function forwarding<T extends object>(current: () => T): T {
  return new Proxy({} as T, {
    get(_target, key) {
      const target = current();
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
    set(_target, key, value) {
      return Reflect.set(current(), key, value);
    },
    has(_target, key) {
      return Reflect.has(current(), key);
    },
  });
}

/**
 * A real xDS server on an ephemeral port. Loading the service protos makes a server cost a few
 * hundred milliseconds, so a test file shares one; `reset()` gives each test a fresh cache,
 * registry and fetch tracker (the cache remembers rejections across streams, the registry
 * counts NACKs), which is a fresh control plane behind the same port.
 */
export async function startXds(initial: Snapshot = snapshotOf()): Promise<XdsHarness> {
  let cache = new SnapshotCache();
  let clients = new ClientRegistry();
  let fetches = new FetchTracker();
  cache.set(initial);
  const logs: LogLine[] = [];
  const log = {
    info: (obj: object, msg: string) => void logs.push({ level: "info", msg, obj }),
    warn: (obj: object, msg: string) => void logs.push({ level: "warn", msg, obj }),
    error: (obj: object, msg: string) => void logs.push({ level: "error", msg, obj }),
  };
  const server = createXdsServer({
    cache: forwarding(() => cache),
    clients: forwarding(() => clients),
    fetches: forwarding(() => fetches),
    log,
  });
  const port = await listenXds(server, "127.0.0.1", 0);
  const opened: XdsClient[] = [];
  const streamsOf = (nodeId: string) => clients.list().filter((c) => c.nodeId === nodeId);
  return {
    port,
    get cache() {
      return cache;
    },
    get clients() {
      return clients;
    },
    get fetches() {
      return fetches;
    },
    logs,
    connect() {
      const c = new XdsClient(port);
      opened.push(c);
      return c;
    },
    streamsOf,
    typeStatus(nodeId, typeUrl, ok, what) {
      return waitFor(() => {
        for (const c of streamsOf(nodeId)) {
          const t = c.types.get(typeUrl);
          if (t && ok(t)) return t;
        }
        return undefined;
      }, {
        what: `${nodeId}: ${what}`,
        timeoutMs: RESPONSE_TIMEOUT_MS,
        intervalMs: POLL_MS,
        details: () => `registry: ${JSON.stringify(streamsOf(nodeId).map((c) => Object.fromEntries(c.types)))}`,
      });
    },
    async reset() {
      for (const c of opened.splice(0)) c.close();
      await waitFor(() => clients.list().length === 0, {
        what: "the server to drop every stream of the previous test from the ClientRegistry",
        timeoutMs: RESPONSE_TIMEOUT_MS,
        intervalMs: POLL_MS,
        details: () => `still registered: ${clients.list().map((c) => `${c.nodeId}#${c.streamId}`).join(", ")}`,
      });
      cache = new SnapshotCache();
      clients = new ClientRegistry();
      fetches = new FetchTracker();
      cache.set(initial);
      logs.length = 0;
    },
    async close() {
      for (const c of opened.splice(0)) c.close();
      server.forceShutdown();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Looking inside responses

export function decodeAny(any: AnyMessage): ResourceObject {
  return decodeMessage(any.type_url, any.value);
}

/** Resource names of a SotW response (every resource type here has a `name`, EDS a `cluster_name`). */
export function namesOf(r: DiscoveryResponse): string[] {
  return (r.resources ?? []).map((a) => {
    const d = decodeAny(a);
    return String(d.name ?? d.cluster_name);
  });
}

/** `nack_on_code_cache_miss` of a decoded TypedExtensionConfig (Wasm). */
export function nackOnCacheMiss(any: AnyMessage): boolean {
  const d = decodeAny(any) as { typed_config?: { config?: { vm_config?: { nack_on_code_cache_miss?: boolean } } } };
  return d.typed_config?.config?.vm_config?.nack_on_code_cache_miss === true;
}

// ---------------------------------------------------------------------------------------------
// Requests as Envoy writes them

export const NODE_CLUSTER = "wasm-xds";

export function nodeOf(id: string): { id: string; cluster: string } {
  return { id, cluster: NODE_CLUSTER };
}

/** SotW ACK of `r`: its version and nonce, the subscription unchanged (or `names`). */
export function sotwAck(r: DiscoveryResponse, names: string[] = []): DiscoveryRequest {
  return { type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce, resource_names: names };
}

/** SotW NACK of `r`: Envoy keeps `heldVersion` (what it last accepted) and says why. */
export function sotwNack(r: DiscoveryResponse, message: string, names: string[] = [], heldVersion = ""): DiscoveryRequest {
  return { type_url: r.type_url, version_info: heldVersion, response_nonce: r.nonce, resource_names: names, error_detail: { code: 13, message } };
}

export function deltaAck(r: DeltaDiscoveryResponse): DeltaDiscoveryRequest {
  return { type_url: r.type_url, response_nonce: r.nonce };
}

export function deltaNack(r: DeltaDiscoveryResponse, message: string): DeltaDiscoveryRequest {
  return { type_url: r.type_url, response_nonce: r.nonce, error_detail: { code: 13, message } };
}
