// Simulated Envoys for the fan-out benchmark: one ADS stream each, speaking the state-of-the-world
// or the incremental (delta) protocol over real gRPC, ACKing everything. They never fetch modules.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { discoveryLoaderOptions } from "../../controlplane/xds/protos.ts";
import { CLUSTER, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../controlplane/xds/type-urls.ts";
import { sharedNow } from "./fanout-protocol.ts";

export type Variant = "sotw" | "delta";

interface Any {
  type_url: string;
  value: Buffer;
}
interface Node {
  id: string;
  cluster: string;
}
interface SotwRequest {
  node?: Node;
  type_url: string;
  resource_names: string[];
  version_info?: string;
  response_nonce?: string;
}
interface SotwResponse {
  version_info?: string;
  resources?: Any[];
  type_url?: string;
  nonce?: string;
}
interface DeltaRequest {
  node?: Node;
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
}
interface DeltaResponse {
  system_version_info?: string;
  resources?: { name?: string; version?: string; resource?: Any }[];
  type_url?: string;
  removed_resources?: string[];
  nonce?: string;
}

type Duplex = grpc.ClientDuplexStream<SotwRequest | DeltaRequest, SotwResponse | DeltaResponse>;
type AdsClient = grpc.Client & {
  StreamAggregatedResources(): Duplex;
  DeltaAggregatedResources(): Duplex;
};

let adsCtor: (new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => AdsClient) | undefined;

/** The ADS client constructor, loaded the way the server loads its service. */
export function adsClientConstructor(): NonNullable<typeof adsCtor> {
  if (adsCtor) return adsCtor;
  const definition = protoLoader.loadSync("envoy/service/discovery/v3/ads.proto", discoveryLoaderOptions());
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: NonNullable<typeof adsCtor> } } } };
  };
  adsCtor = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService;
  return adsCtor;
}

/**
 * One gRPC channel (its own HTTP/2 connection: a local subchannel pool plus a distinct channel
 * option, so grpc-js never shares the connection with another channel).
 */
export function openChannel(port: number, index: number): AdsClient {
  const Ctor = adsClientConstructor();
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
    "bench.channel_index": index,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
  });
}

export interface SimEnvoyOptions {
  variant: Variant;
  nodeId: string;
  filters: readonly string[];
  /** Delta only: wildcard as `["*"]` (explicit) or an empty first subscription (legacy). */
  deltaWildcard: "star" | "empty";
}

/**
 * A stream that behaves like Envoy's ADS mux: CDS and LDS (wildcard) first, then, once the
 * listener arrived, RDS for the route and ECDS for the filters; every response ACKed at once.
 */
export class SimEnvoy {
  private call: Duplex | undefined;
  private nodeSent = false;
  private closing = false;
  private dependentsRequested = false;
  private readonly names = new Map<string, string[]>();
  /**
   * ECDS: when a response carrying version X (SotW) or resource name@version (delta) was ACKed;
   * delta also name#k for the k-th time the resource arrived (versions that differ per node).
   */
  readonly ecdsAckedAt = new Map<string, number>();
  private readonly deltaArrivals = new Map<string, number>();
  ecdsResponses = 0;
  responses = 0;
  error: grpc.ServiceError | undefined;
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private fail!: (err: Error) => void;
  private waiters: { key: string; resolve: (at: number) => void }[] = [];

  constructor(private readonly opts: SimEnvoyOptions) {
    this.ready = new Promise((resolve, reject) => {
      this.markReady = resolve;
      this.fail = reject;
    });
    this.ready.catch(() => undefined);
  }

  start(client: AdsClient): void {
    const call = this.opts.variant === "sotw" ? client.StreamAggregatedResources() : client.DeltaAggregatedResources();
    this.call = call;
    call.on("data", (r: SotwResponse | DeltaResponse) => {
      this.responses++;
      if (this.opts.variant === "sotw") this.onSotw(r as SotwResponse);
      else this.onDelta(r as DeltaResponse);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (this.closing) return;
      this.error = err;
      this.fail(err);
    });
    call.on("end", () => {
      if (!this.closing && !this.error) this.fail(new Error(`${this.opts.nodeId}: server ended the stream`));
    });
    this.subscribe(CLUSTER, []);
    this.subscribe(LISTENER, []);
  }

  /** Resolves with the ACK time once an ECDS response with `key` was ACKed (may already be). */
  ackOf(key: string): Promise<number> {
    const at = this.ecdsAckedAt.get(key);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve) => {
      this.waiters.push({ key, resolve });
    });
  }

  close(): void {
    this.closing = true;
    this.call?.cancel();
  }

  private withNode<T extends { node?: Node }>(req: T): T {
    if (!this.nodeSent) {
      req.node = { id: this.opts.nodeId, cluster: "wasm-xds" };
      this.nodeSent = true;
    }
    return req;
  }

  private subscribe(typeUrl: string, names: string[]): void {
    this.names.set(typeUrl, names);
    if (this.opts.variant === "sotw") {
      this.call!.write(this.withNode<SotwRequest>({ type_url: typeUrl, resource_names: names }));
      return;
    }
    const wildcard = typeUrl === CLUSTER || typeUrl === LISTENER;
    const subscribe = wildcard ? (this.opts.deltaWildcard === "star" ? ["*"] : []) : names;
    this.call!.write(this.withNode<DeltaRequest>({ type_url: typeUrl, resource_names_subscribe: subscribe }));
  }

  private afterResponse(typeUrl: string): void {
    if (typeUrl === LISTENER && !this.dependentsRequested) {
      this.dependentsRequested = true;
      this.subscribe(ROUTE, ["local_route"]);
      this.subscribe(EXTENSION_CONFIG, [...this.opts.filters]);
    }
  }

  private recordEcds(keys: string[], at: number): void {
    this.ecdsResponses++;
    for (const k of keys) if (!this.ecdsAckedAt.has(k)) this.ecdsAckedAt.set(k, at);
    if (this.waiters.length > 0) {
      const due = this.waiters.filter((w) => this.ecdsAckedAt.has(w.key));
      this.waiters = this.waiters.filter((w) => !this.ecdsAckedAt.has(w.key));
      for (const w of due) w.resolve(this.ecdsAckedAt.get(w.key)!);
    }
    this.markReady();
  }

  private onSotw(r: SotwResponse): void {
    const typeUrl = r.type_url ?? "";
    this.call!.write({
      type_url: typeUrl,
      resource_names: this.names.get(typeUrl) ?? [],
      version_info: r.version_info ?? "",
      response_nonce: r.nonce ?? "",
    } satisfies SotwRequest);
    if (typeUrl === EXTENSION_CONFIG) this.recordEcds([r.version_info ?? ""], sharedNow());
    this.afterResponse(typeUrl);
  }

  private onDelta(r: DeltaResponse): void {
    const typeUrl = r.type_url ?? "";
    this.call!.write({ type_url: typeUrl, response_nonce: r.nonce ?? "" } satisfies DeltaRequest);
    if (typeUrl === EXTENSION_CONFIG) {
      const keys: string[] = [];
      for (const x of r.resources ?? []) {
        const name = x.name ?? "";
        const k = (this.deltaArrivals.get(name) ?? 0) + 1;
        this.deltaArrivals.set(name, k);
        keys.push(`${name}@${x.version ?? ""}`, `${name}#${k}`);
      }
      if (r.system_version_info) keys.push(r.system_version_info);
      this.recordEcds(keys, sharedNow());
    }
    this.afterResponse(typeUrl);
  }
}
