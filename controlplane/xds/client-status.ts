import type { EventBus } from "../events/bus.ts";
import type { EnvoyNode } from "./discovery-types.ts";
import { EXTENSION_CONFIG, LISTENER, ROUTE, shortName } from "./type-urls.ts";

export interface NackRecord {
  version: string;
  nonce: string;
  message: string;
  at: string;
  /** Delta: the resources of the rejected response. */
  resources?: string[];
}

export interface TypeStatus {
  typeUrl: string;
  resourceNames: string[];
  sentVersion?: string;
  sentNonce?: string;
  /** When sentVersion went out (ISO 8601). */
  sentAt?: string;
  ackedVersion?: string;
  /** When Envoy's ACK of ackedVersion arrived (ISO 8601). */
  ackedAt?: string;
  /** Per resource, the version this Envoy ACKed (so the API can say which module it runs). */
  ackedResources?: Record<string, string>;
  lastNack?: NackRecord;
}

export interface ClientStatus {
  streamId: number;
  nodeId: string;
  nodeCluster: string;
  peer: string;
  connectedAt: string;
  types: Map<string, TypeStatus>;
  /** ECDS configs re-sent after Envoy NACKed a code-cache miss and then fetched the module. */
  cacheMissResends?: number;
  /** Latched by ClientRegistry.usesOurRoutes once this stream's Envoy was seen taking our LDS or RDS. */
  usesOurRoutes?: boolean;
}

/** Whether a stream subscribes to our listener or route config (so the RDS switch reaches its Envoy). */
function takesRoutes(c: ClientStatus): boolean {
  return c.usesOurRoutes === true || c.types.has(LISTENER) || c.types.has(ROUTE);
}

let isoAt = -1;
let isoText = "";

/**
 * Now, as ISO 8601, formatted once per millisecond: a fan-out stamps every stream's push and
 * ACK within a few milliseconds, and formatting a Date each time showed in its profile.
 */
export function isoNow(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

export type NackListener = (client: ClientStatus, type: TypeStatus, nack: NackRecord) => void;

/**
 * What each connected Envoy was sent and what it accepted or rejected. Streams write here;
 * the admin API and metrics only read.
 */
export class ClientRegistry {
  /** Optional live event stream (admin SSE, metrics); the registry is where xDS events start. */
  constructor(private readonly events?: EventBus) {}

  private readonly clients = new Map<number, ClientStatus>();
  private readonly nackListeners = new Set<NackListener>();
  /** Live streams by peer (hasStream, once per stats flush per Envoy). */
  private readonly byPeer = new Map<string, ClientStatus[]>();
  nackCount = 0;
  /** NACKs per type URL since start (the metric). */
  readonly nacksByType = new Map<string, number>();
  /** ECDS configs re-sent after a code-cache miss, since start. */
  cacheMissResends = 0;
  /** Streams reset because their peer did not read its responses (xds-server.ts), since start. */
  slowStreamsClosed = 0;

  add(client: ClientStatus): void {
    this.clients.set(client.streamId, client);
    this.byPeer.set(client.peer, [...(this.byPeer.get(client.peer) ?? []), client]);
    this.events?.emit({ type: "client.connected", node: client.nodeId, cluster: client.nodeCluster, stream: client.streamId, peer: client.peer });
  }

  remove(streamId: number): void {
    const client = this.clients.get(streamId);
    if (!client) return;
    this.clients.delete(streamId);
    const rest = (this.byPeer.get(client.peer) ?? []).filter((c) => c !== client);
    if (rest.length > 0) this.byPeer.set(client.peer, rest);
    else this.byPeer.delete(client.peer);
    this.events?.emit({ type: "client.disconnected", node: client.nodeId, cluster: client.nodeCluster, stream: streamId });
  }

  slowStreamClosed(): void {
    this.slowStreamsClosed++;
  }

  pushed(client: ClientStatus, typeUrl: string, version: string, nonce: string, resources: string[]): void {
    const t = client.types.get(typeUrl);
    if (t) t.sentAt = isoNow();
    this.events?.emit({ type: "xds.pushed", node: client.nodeId, stream: client.streamId, typeUrl, version, nonce, resources });
  }

  acked(client: ClientStatus, typeUrl: string, version: string): void {
    const t = client.types.get(typeUrl);
    if (t) t.ackedAt = isoNow();
    this.events?.emit({ type: "xds.acked", node: client.nodeId, stream: client.streamId, typeUrl, version });
  }

  resentAfterFetch(client: ClientStatus, shas: string[]): void {
    this.cacheMissResends++;
    this.events?.emit({ type: "xds.cache_miss_resend", node: client.nodeId, stream: client.streamId, shas });
  }

  list(): ClientStatus[] {
    return [...this.clients.values()];
  }

  /**
   * True while `node` has a live xDS stream from `peer` (address:port of its connection): the
   * health monitor counts an Envoy's stats only when they come over that same connection.
   */
  hasStream(node: { id: string; cluster: string }, peer: string): boolean {
    return (this.byPeer.get(peer) ?? []).some((c) => c.nodeId === node.id && c.nodeCluster === node.cluster);
  }

  /**
   * Whether `client`'s Envoy uses our listener or routes: one of its streams (on the same HTTP/2
   * connection, as Envoy multiplexes them) subscribes to LDS or RDS. Otherwise it is ECDS-only
   * (docs/ecds-only.md) and a disabled filter must reach it over ECDS. Latched per stream, so an
   * LDS stream that reconnects after this one does not make it ECDS-only for a while.
   */
  usesOurRoutes(client: ClientStatus): boolean {
    if (client.usesOurRoutes) return true;
    const siblings = this.byPeer.get(client.peer) ?? [client];
    if (!siblings.some((c) => c.nodeId === client.nodeId && c.nodeCluster === client.nodeCluster && takesRoutes(c))) return false;
    client.usesOurRoutes = true;
    return true;
  }

  onNack(listener: NackListener): () => void {
    this.nackListeners.add(listener);
    return () => this.nackListeners.delete(listener);
  }

  recordNack(client: ClientStatus, type: TypeStatus, nack: NackRecord): void {
    type.lastNack = nack;
    this.nackCount++;
    this.nacksByType.set(type.typeUrl, (this.nacksByType.get(type.typeUrl) ?? 0) + 1);
    this.events?.emit({ type: "xds.nacked", node: client.nodeId, stream: client.streamId, typeUrl: type.typeUrl, version: nack.version, message: nack.message });
    for (const listener of this.nackListeners) listener(client, type, nack);
  }
}

function typeView(t: TypeStatus, streamId: number): Record<string, unknown> {
  return {
    short: shortName(t.typeUrl),
    stream: streamId,
    resourceNames: t.resourceNames,
    sentVersion: t.sentVersion ?? null,
    sentAt: t.sentAt ?? null,
    ackedVersion: t.ackedVersion ?? null,
    ackedAt: t.ackedAt ?? null,
    ackedResources: t.ackedResources ?? {},
    lastNack: t.lastNack ?? null,
  };
}

/**
 * JSON view for the admin API: one entry per Envoy (node id + cluster), whether it uses one
 * ADS stream or a stream per type, with every type it subscribes to.
 */
export function describeClients(
  clients: readonly ClientStatus[],
  /** Module sha256 of an ECDS resource version, if known (so the view says which module runs). */
  moduleOf: (filter: string, resourceVersion: string) => string | undefined = () => undefined,
): Record<string, unknown>[] {
  const byNode = new Map<string, ClientStatus[]>();
  for (const c of clients) {
    const key = `${c.nodeId}\n${c.nodeCluster}`;
    byNode.set(key, [...(byNode.get(key) ?? []), c]);
  }
  return [...byNode.values()].map((streams) => ({
    node: { id: streams[0]!.nodeId, cluster: streams[0]!.nodeCluster },
    streams: streams.map((c) => ({ id: c.streamId, peer: c.peer, connectedAt: c.connectedAt })),
    cacheMissResends: streams.reduce((n, c) => n + (c.cacheMissResends ?? 0), 0),
    // Takes no listener or routes from us: a disabled filter reaches it as a native no-op (docs/ecds-only.md).
    ecdsOnly: !streams.some(takesRoutes),
    // Per-type services open one stream per subscription (Envoy: one EDS stream per cluster);
    // the view keeps one per type, chosen by resource names, so the same stream is shown
    // whatever order the streams opened in (a restart or failover must compare like with like).
    types: Object.fromEntries(streams.flatMap((c) => [...c.types.values()].map((t) => ({ t, c })))
      .sort((a, b) => (a.t.resourceNames.join("\n") < b.t.resourceNames.join("\n") ? -1 : 1))
      .map(({ t, c }) => [t.typeUrl, typeView(t, c.streamId)])),
    // The Wasm module each filter runs on this Envoy, from the ECDS versions it ACKed.
    filters: Object.fromEntries(streams.flatMap((c) => Object.entries(c.types.get(EXTENSION_CONFIG)?.ackedResources ?? {})
      .map(([name, version]) => [name, moduleOf(name, version) ?? null]))),
  }));
}

export function nodeOf(node: EnvoyNode): { id: string; cluster: string } {
  return { id: node.id ?? "", cluster: node.cluster ?? "" };
}
