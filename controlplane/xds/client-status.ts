import type { EnvoyNode } from "./discovery-types.ts";
import { shortName } from "./type-urls.ts";

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
  ackedVersion?: string;
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
}

export type NackListener = (client: ClientStatus, type: TypeStatus, nack: NackRecord) => void;

/**
 * What each connected Envoy was sent and what it accepted or rejected. Streams write here;
 * the admin API and metrics only read.
 */
export class ClientRegistry {
  private readonly clients = new Map<number, ClientStatus>();
  private readonly nackListeners = new Set<NackListener>();
  nackCount = 0;

  add(client: ClientStatus): void {
    this.clients.set(client.streamId, client);
  }

  remove(streamId: number): void {
    this.clients.delete(streamId);
  }

  list(): ClientStatus[] {
    return [...this.clients.values()];
  }

  onNack(listener: NackListener): () => void {
    this.nackListeners.add(listener);
    return () => this.nackListeners.delete(listener);
  }

  recordNack(client: ClientStatus, type: TypeStatus, nack: NackRecord): void {
    type.lastNack = nack;
    this.nackCount++;
    for (const listener of this.nackListeners) listener(client, type, nack);
  }
}

/** JSON view for the admin API. */
export function describeClient(c: ClientStatus): Record<string, unknown> {
  return {
    streamId: c.streamId,
    node: { id: c.nodeId, cluster: c.nodeCluster },
    peer: c.peer,
    connectedAt: c.connectedAt,
    cacheMissResends: c.cacheMissResends ?? 0,
    types: Object.fromEntries([...c.types.values()].map((t) => [t.typeUrl, {
      short: shortName(t.typeUrl),
      resourceNames: t.resourceNames,
      sentVersion: t.sentVersion ?? null,
      ackedVersion: t.ackedVersion ?? null,
      lastNack: t.lastNack ?? null,
    }])),
  };
}

export function nodeOf(node: EnvoyNode): { id: string; cluster: string } {
  return { id: node.id ?? "", cluster: node.cluster ?? "" };
}
