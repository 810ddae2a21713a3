import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { ClientRegistry, ClientStatus, NackRecord, TypeStatus } from "./client-status.ts";
import type { EnvoyNode } from "./discovery-types.ts";
import type { ConfigSourceKind, DeliveryVariant } from "./resources.ts";
import type { Snapshot } from "./snapshot.ts";
import { shortName } from "./type-urls.ts";

/** A request that breaks the protocol; the server ends the stream with this gRPC status. */
export class ProtocolError extends Error {
  constructor(readonly grpcCode: number, message: string) {
    super(message);
  }
}

export const INVALID_ARGUMENT = 3;

export interface SessionLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What every session (SotW or Delta, ADS or a per-type service) is given. */
export interface SessionDeps<Response> {
  registry: ClientRegistry;
  fetches: FetchTracker;
  log: SessionLog;
  /** Current snapshot (the cache's); read on every decision so a re-send never sends stale config. */
  snapshot: () => Snapshot | undefined;
  send: (response: Response) => void;
  /** Type URLs this service serves (ADS: all; a per-type service: one). */
  types: readonly string[];
  /** How this stream's Envoy fetches what listeners and clusters refer to. */
  source: ConfigSourceKind;
  /** Override of CACHE_MISS_GRACE_MS (tests). */
  cacheMissGraceMs?: number;
}

/** Node bookkeeping and request validation shared by both protocol variants. */
export abstract class SessionBase<Response> {
  readonly client: ClientStatus;
  private nodeSeen = false;
  private nonceCounter = 0;

  constructor(streamId: number, peer: string, protected readonly deps: SessionDeps<Response>) {
    this.client = { streamId, nodeId: "", nodeCluster: "", peer, connectedAt: new Date().toISOString(), types: new Map() };
  }

  /** Validates node (first request) and type URL; returns the type URL. */
  protected admit(node: EnvoyNode | null | undefined, typeUrl: string | undefined): string {
    if (!this.nodeSeen) {
      if (!node?.id) throw new ProtocolError(INVALID_ARGUMENT, "the first request on a stream must carry node.id");
      this.client.nodeId = node.id;
      this.client.nodeCluster = node.cluster ?? "";
      this.nodeSeen = true;
      this.deps.registry.add(this.client);
    }
    const t = typeUrl ?? "";
    if (!this.deps.types.includes(t)) {
      throw new ProtocolError(INVALID_ARGUMENT, `type_url ${JSON.stringify(t)} is not served here (serving ${this.deps.types.join(", ")})`);
    }
    return t;
  }

  /** The rendering of variant resources for this stream's Envoy. */
  protected variant(nackOnCacheMiss = false): DeliveryVariant {
    return { nodeId: this.client.nodeId, nackOnCacheMiss, source: this.deps.source };
  }

  protected nextNonce(): string {
    return String(++this.nonceCounter);
  }

  protected recordNack(st: TypeStatus, version: string, nonce: string, message: string, resources?: string[]): void {
    const nack: NackRecord = { version, nonce, message, at: new Date().toISOString() };
    if (resources) nack.resources = resources;
    this.deps.registry.recordNack(this.client, st, nack);
    this.deps.log.warn({ node: this.client.nodeId, type: shortName(st.typeUrl), version, error: message }, "Envoy rejected (NACK)");
  }

  close(): void {
    if (this.nodeSeen) this.deps.registry.remove(this.client.streamId);
  }
}
