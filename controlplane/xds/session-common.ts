import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { ClientRegistry, ClientStatus, NackRecord, TypeStatus } from "./client-status.ts";
import type { EnvoyNode } from "./discovery-types.ts";
import type { RejectionView } from "./cache.ts";
import type { EcdsVariant } from "./ecds-delivery.ts";
import { NATIVE_NOOP_FILTER_TYPE, type ConfigSourceKind } from "./resources.ts";
import { changedTypes, type EncodedResource, type Snapshot } from "./snapshot.ts";
import { shortName } from "./type-urls.ts";

/** A request that breaks the protocol; the server ends the stream with this gRPC status. */
export class ProtocolError extends Error {
  constructor(readonly grpcCode: number, message: string) {
    super(message);
  }
}

export const INVALID_ARGUMENT = 3;
export const RESOURCE_EXHAUSTED = 8;

/**
 * Bounds on what one request may name. An Envoy names one resource per filter, route table or
 * cluster it uses: tens, rarely thousands. A request beyond these is not an Envoy's.
 */
export const MAX_NAMES_PER_REQUEST = 10_000;
export const MAX_NAME_LENGTH = 1024;

/** Throws (the stream is closed) when a request names more, or longer, resources than any Envoy would. */
export function checkResourceNames(names: readonly string[], what = "resource_names"): void {
  if (names.length > MAX_NAMES_PER_REQUEST) {
    throw new ProtocolError(RESOURCE_EXHAUSTED, `${what} names ${names.length} resources (at most ${MAX_NAMES_PER_REQUEST})`);
  }
  for (const n of names) {
    if (n.length > MAX_NAME_LENGTH) {
      throw new ProtocolError(RESOURCE_EXHAUSTED, `${what} has a name of ${n.length} characters (at most ${MAX_NAME_LENGTH})`);
    }
  }
}

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
  /** The NACK policy of this stream's node group (the cache's); none in pure unit tests. */
  rejections?: RejectionView;
  /** Whether this stream's Envoy takes only ECDS from us (docs/ecds-only.md); absent: no. */
  ecdsOnly?: () => boolean;
}

export interface ResourceVersion {
  name: string;
  version: string;
}

/**
 * Envoy's own words for a rejected native no-op ("filter config has type URL ...HeaderMutation but
 * expect ...Wasm") do not say why it was sent: what to change, for the API and the log.
 */
function noopHint(current: ReadonlyMap<string, EncodedResource> | undefined, rejected: readonly ResourceVersion[]): string {
  const names = rejected.filter((r) => {
    const resource = current?.get(r.name);
    return resource?.nativeNoop === true && resource.version === r.version;
  }).map((r) => r.name);
  if (names.length === 0) return "";
  return ` (wasm-xds: ${names.join(", ")} ${names.length > 1 ? "are" : "is"} disabled, and this Envoy, which takes no listener` +
    ` or routes from the control plane, gets a disabled filter as ${NATIVE_NOOP_FILTER_TYPE}: add that type to the filter's` +
    " config_discovery type_urls (docs/ecds-only.md); until then the filter keeps running here)";
}

/** Node bookkeeping and request validation shared by both protocol variants. */
export abstract class SessionBase<Response> {
  readonly client: ClientStatus;
  private nodeSeen = false;
  private nonceCounter = 0;
  /** The snapshot this stream last reacted to; a wake-up diffs against it. */
  protected seen: Snapshot | undefined;

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
  protected variant(nackOnCacheMiss = false, afterFetch = false): EcdsVariant {
    const v: EcdsVariant = { nodeId: this.client.nodeId, nackOnCacheMiss, source: this.deps.source };
    if (afterFetch) v.afterFetch = true;
    if (this.deps.ecdsOnly?.()) v.listenersMayBeWarm = true;
    return v;
  }

  /** A nonce this stream never issued is a client bug (a superseded one is merely stale). */
  protected checkNonce(nonce: string | undefined): void {
    if (!nonce) return;
    if (!/^[1-9]\d*$/.test(nonce) || Number(nonce) > this.nonceCounter) {
      throw new ProtocolError(INVALID_ARGUMENT, `response_nonce ${JSON.stringify(nonce)} was never sent on this stream`);
    }
  }

  /** Remembers ACKed resource versions: the fallbacks `pick` may offer other Envoys. */
  protected recordAck(typeUrl: string, names: readonly string[], versions: readonly string[]): void {
    const rej = this.deps.rejections;
    if (rej) for (let i = 0; i < names.length; i++) rej.accept(typeUrl, names[i]!, versions[i]!);
  }

  protected changedSinceSeen(snapshot: Snapshot): string[] {
    return changedTypes(this.seen, snapshot);
  }

  protected nextNonce(): string {
    return String(++this.nonceCounter);
  }

  /**
   * A real rejection: recorded for the API, and the rejected resource versions are remembered
   * so that no other Envoy is handed them (see `pick`).
   */
  protected recordNack(st: TypeStatus, version: string, nonce: string, envoyMessage: string, rejected: readonly ResourceVersion[]): void {
    const message = envoyMessage + noopHint(this.deps.snapshot()?.types.get(st.typeUrl)?.resources, rejected);
    const nack: NackRecord = { version, nonce, message, at: new Date().toISOString(), resources: rejected.map((r) => r.name) };
    for (const r of rejected) this.deps.rejections?.reject(st.typeUrl, r.name, r.version);
    this.deps.registry.recordNack(this.client, st, nack);
    this.deps.log.warn({ node: this.client.nodeId, type: shortName(st.typeUrl), version, error: message }, "Envoy rejected (NACK)");
  }

  /**
   * The resources to send: a version an Envoy of this node group rejected is replaced by the
   * newest version of that resource an Envoy of the group accepted and none rejected. With no
   * such version the current one goes out: a resource is never left out, since SotW reads a
   * missing listener or cluster as "delete it" (cache.ts, RejectionView).
   */
  protected pick(typeUrl: string, resources: readonly EncodedResource[]): EncodedResource[] {
    return resources.map((r) => this.pickOne(typeUrl, r));
  }

  /** `pick` for one resource. */
  protected pickOne(typeUrl: string, r: EncodedResource): EncodedResource {
    const rej = this.deps.rejections;
    return rej?.isRejected(typeUrl, r.name, r.version) ? rej.newestAccepted(typeUrl, r.name) ?? r : r;
  }

  close(): void {
    if (this.nodeSeen) this.deps.registry.remove(this.client.streamId);
  }
}
