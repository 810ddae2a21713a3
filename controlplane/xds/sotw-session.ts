import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { ClientRegistry, ClientStatus, TypeStatus } from "./client-status.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import type { EncodedResource, Snapshot } from "./snapshot.ts";
import { CLUSTER, EXTENSION_CONFIG, LISTENER, PUSH_ORDER, shortName } from "./type-urls.ts";

/** A request that breaks the protocol; the server ends the stream with this gRPC status. */
export class ProtocolError extends Error {
  constructor(readonly grpcCode: number, message: string) {
    super(message);
  }
}

const INVALID_ARGUMENT = 3;
/** Types whose empty resource_names means "everything" (wildcard), per the xDS spec. */
const WILDCARD_TYPES = new Set([CLUSTER, LISTENER]);
/** How long a NACK may wait for the module fetch it implies before it counts as a real rejection. */
export const CACHE_MISS_GRACE_MS = 3000;
/**
 * The module server sees a download finish when the last byte is handed to the kernel; Envoy
 * stores it in its code cache a moment later. A re-send that lands in between finds the fetch
 * "in progress" (another NACK, and a crash path in Envoy), so the re-send waits this long.
 */
export const RESEND_AFTER_FETCH_MS = 100;
/** Re-sends of one version after code-cache misses, before its NACK is taken as real. */
const MAX_CACHE_MISS_RESENDS = 3;

interface Subscription {
  status: TypeStatus;
  wildcard: boolean;
  /** Sorted names of the last response; a request naming a different set gets a response. */
  namesAtLastResponse?: string;
}

/** What went out in the last ECDS response, to judge its NACK. */
interface EcdsSent {
  nonce: string;
  version: string;
  sentAt: number;
  /** sha256 of modules sent with nack_on_code_cache_miss (updates of warm filters). */
  updateShas: string[];
  /** A re-send after Envoy fetched the modules: a NACK of it is a real rejection. */
  afterFetch: boolean;
}

interface PendingResend {
  version: string;
  /** Envoy's error_detail, reported as the rejection if no fetch explains it. */
  envoyMessage: string;
  shas: string[];
  timer: ReturnType<typeof setTimeout>;
  sentAt: number;
}

export interface SessionLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface SessionDeps {
  registry: ClientRegistry;
  fetches: FetchTracker;
  log: SessionLog;
  /** Current snapshot (the cache's); read on every decision so a re-send never sends stale config. */
  snapshot: () => Snapshot | undefined;
  send: (response: DiscoveryResponse) => void;
  /** Override of CACHE_MISS_GRACE_MS (tests). */
  cacheMissGraceMs?: number;
}

/**
 * The state-of-the-world protocol for one stream, without gRPC: requests, snapshot changes
 * and module-fetch completions go in, responses go out through `send`.
 */
export class SotwSession {
  readonly client: ClientStatus;
  private readonly subscriptions = new Map<string, Subscription>();
  private nonceCounter = 0;
  private nodeSeen = false;
  /** ECDS names this Envoy already runs: an update to one needs the cache-miss path. */
  private readonly warmFilters = new Set<string>();
  /** Per ECDS name, the module and variant last sent, so an unchanged filter keeps identical bytes. */
  private readonly sentVariants = new Map<string, { sha256: string | undefined; nack: boolean }>();
  private ecdsSent: EcdsSent | undefined;
  private ecdsResendsOfVersion = { version: "", count: 0 };
  private pending: PendingResend | undefined;
  private fetchedForResend: ReadonlySet<string> = new Set();
  private ecdsDeferred = false;
  private readonly stopWatchingFetches: () => void;

  constructor(streamId: number, peer: string, private readonly deps: SessionDeps) {
    this.client = { streamId, nodeId: "", nodeCluster: "", peer, connectedAt: new Date().toISOString(), types: new Map() };
    this.stopWatchingFetches = deps.fetches.onCompleted((nodeId, sha) => this.onFetchCompleted(nodeId, sha));
  }

  handleRequest(req: DiscoveryRequest): void {
    if (!this.nodeSeen) {
      if (!req.node?.id) throw new ProtocolError(INVALID_ARGUMENT, "the first DiscoveryRequest on a stream must carry node.id");
      this.client.nodeId = req.node.id;
      this.client.nodeCluster = req.node.cluster ?? "";
      this.nodeSeen = true;
      this.deps.registry.add(this.client);
    }
    const typeUrl = req.type_url ?? "";
    if (!PUSH_ORDER.includes(typeUrl)) {
      throw new ProtocolError(INVALID_ARGUMENT, `type_url ${JSON.stringify(typeUrl)} is not served here (serving ${PUSH_ORDER.join(", ")})`);
    }
    const names = [...(req.resource_names ?? [])].sort();
    const nonce = req.response_nonce ?? "";
    const snapshot = this.deps.snapshot();
    let sub = this.subscriptions.get(typeUrl);
    if (!sub) {
      const status: TypeStatus = { typeUrl, resourceNames: names };
      sub = { status, wildcard: false };
      this.subscriptions.set(typeUrl, sub);
      this.client.types.set(typeUrl, status);
    }
    const st = sub.status;
    // An answer to a response we have since superseded: the newer one is still coming.
    if (nonce !== "" && nonce !== st.sentNonce) return;

    if (nonce !== "") {
      if (req.error_detail) this.onNack(sub, req.error_detail.message ?? "");
      else this.onAck(sub, req.version_info ?? "");
    } else if (req.version_info) {
      // A reconnecting Envoy: it already runs what it names, at version_info.
      if (typeUrl === EXTENSION_CONFIG) for (const n of names) this.warmFilters.add(n);
      if (req.version_info === snapshot?.types.get(typeUrl)?.version) {
        st.ackedVersion = req.version_info;
        st.sentVersion = req.version_info;
        sub.namesAtLastResponse = names.join("\n");
      }
    }
    if (typeUrl === EXTENSION_CONFIG) {
      // A filter dropped from the subscription is no longer warm; if it comes back it warms again.
      for (const n of [...this.warmFilters]) if (!names.includes(n)) this.warmFilters.delete(n);
    }
    st.resourceNames = names;
    sub.wildcard = names.length === 0 && WILDCARD_TYPES.has(typeUrl);
    if (this.pending && typeUrl === EXTENSION_CONFIG) return; // a re-send is due; it carries the names too
    const namesChanged = sub.namesAtLastResponse !== names.join("\n");
    if (snapshot) this.respond(sub, snapshot, namesChanged);
  }

  /** Pushes the types a new snapshot changed, in push order (clusters first). */
  handleSnapshot(snapshot: Snapshot, changed: readonly string[]): void {
    for (const typeUrl of PUSH_ORDER) {
      const sub = this.subscriptions.get(typeUrl);
      if (!sub || !changed.includes(typeUrl)) continue;
      if (typeUrl === EXTENSION_CONFIG) {
        this.cancelPending();
        if (this.fetchInFlightFor(snapshot)) {
          // Announcing a sha256 Envoy is still downloading is a crash path in Envoy's Wasm
          // code cache: wait for the download, then push.
          this.ecdsDeferred = true;
          continue;
        }
      }
      this.respond(sub, snapshot, false);
    }
  }

  close(): void {
    this.cancelPending();
    this.stopWatchingFetches();
    this.deps.registry.remove(this.client.streamId);
  }

  private onAck(sub: Subscription, version: string): void {
    sub.status.ackedVersion = version;
    if (sub.status.typeUrl === EXTENSION_CONFIG) for (const n of sub.status.resourceNames) this.warmFilters.add(n);
  }

  private onNack(sub: Subscription, message: string): void {
    const st = sub.status;
    const sent = this.ecdsSent;
    if (st.typeUrl === EXTENSION_CONFIG && sent && !sent.afterFetch && sent.updateShas.length > 0) {
      if (this.ecdsResendsOfVersion.version !== sent.version) this.ecdsResendsOfVersion = { version: sent.version, count: 0 };
      if (this.ecdsResendsOfVersion.count < MAX_CACHE_MISS_RESENDS) {
        // Likely a code-cache miss: Envoy is fetching the module now. Re-send once it has it.
        this.deps.log.info({ node: this.client.nodeId, version: sent.version, shas: sent.updateShas, envoy: message }, "ECDS NACK on a new module; waiting for Envoy's fetch to re-send");
        this.waitForFetches(sent, message);
        return;
      }
    }
    const nack = { version: st.sentVersion ?? "", nonce: st.sentNonce ?? "", message, at: new Date().toISOString() };
    this.deps.registry.recordNack(this.client, st, nack);
    this.deps.log.warn({ node: this.client.nodeId, type: shortName(st.typeUrl), version: nack.version, error: message }, "Envoy rejected (NACK)");
  }

  private waitForFetches(sent: EcdsSent, envoyMessage: string): void {
    this.cancelPending();
    const timer = setTimeout(() => this.onFetchGraceExpired(), this.deps.cacheMissGraceMs ?? CACHE_MISS_GRACE_MS);
    timer.unref?.();
    this.pending = { version: sent.version, envoyMessage, shas: sent.updateShas, timer, sentAt: sent.sentAt };
    // The download may already have finished before the NACK arrived.
    const settle = setTimeout(() => this.resendIfFetched(), RESEND_AFTER_FETCH_MS);
    settle.unref?.();
  }

  private onFetchCompleted(nodeId: string, _sha: string): void {
    if (nodeId !== this.client.nodeId) return;
    const settle = setTimeout(() => this.afterFetchSettled(), RESEND_AFTER_FETCH_MS);
    settle.unref?.();
  }

  private afterFetchSettled(): void {
    this.resendIfFetched();
    const snapshot = this.deps.snapshot();
    const sub = this.subscriptions.get(EXTENSION_CONFIG);
    if (this.ecdsDeferred && snapshot && sub && !this.fetchInFlightFor(snapshot)) {
      this.ecdsDeferred = false;
      this.respond(sub, snapshot, false);
    }
  }

  private fetchInFlightFor(snapshot: Snapshot): boolean {
    const ecds = snapshot.types.get(EXTENSION_CONFIG);
    const names = this.subscriptions.get(EXTENSION_CONFIG)?.status.resourceNames ?? [];
    return names.some((n) => {
      const sha = ecds?.resources.get(n)?.moduleSha256;
      return sha !== undefined && this.deps.fetches.state(this.client.nodeId, sha, 0) === "in-flight";
    });
  }

  private resendIfFetched(): void {
    const p = this.pending;
    if (!p) return;
    const states = p.shas.map((sha) => this.deps.fetches.state(this.client.nodeId, sha, p.sentAt));
    if (!states.every((s) => s === "done")) return;
    this.cancelPending();
    const sub = this.subscriptions.get(EXTENSION_CONFIG);
    const snapshot = this.deps.snapshot();
    if (!sub || !snapshot) return;
    this.ecdsResendsOfVersion.count++;
    this.client.cacheMissResends = (this.client.cacheMissResends ?? 0) + 1;
    this.fetchedForResend = new Set(p.shas);
    try {
      this.respond(sub, snapshot, true);
    } finally {
      this.fetchedForResend = new Set();
    }
  }

  private onFetchGraceExpired(): void {
    const p = this.pending;
    if (!p) return;
    const sub = this.subscriptions.get(EXTENSION_CONFIG);
    const states = p.shas.map((sha) => this.deps.fetches.state(this.client.nodeId, sha, p.sentAt));
    if (states.includes("in-flight")) {
      // Still downloading: keep waiting; completion re-sends. (Envoy's own http timeout bounds it.)
      p.timer = setTimeout(() => this.onFetchGraceExpired(), this.deps.cacheMissGraceMs ?? CACHE_MISS_GRACE_MS);
      p.timer.unref?.();
      return;
    }
    this.cancelPending();
    if (sub) {
      const st = sub.status;
      const nack = { version: st.sentVersion ?? "", nonce: st.sentNonce ?? "", message: p.envoyMessage, at: new Date().toISOString() };
      this.deps.registry.recordNack(this.client, st, nack);
      this.deps.log.warn({ node: this.client.nodeId, type: "ECDS", version: nack.version }, "Envoy rejected (NACK) without fetching the module");
    }
  }

  private cancelPending(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
  }

  private respond(sub: Subscription, snapshot: Snapshot, force: boolean): void {
    const st = sub.status;
    const current = snapshot.types.get(st.typeUrl);
    if (!current) return;
    // A named type with no names is an unsubscription (e.g. the last Wasm filter went away).
    if (!sub.wildcard && st.resourceNames.length === 0) return;
    if (!force && current.version === st.sentVersion) return;
    // Never re-send a version this Envoy rejected; the next different version will go out.
    if (!force && current.version === st.lastNack?.version) return;
    const resources = sub.wildcard
      ? [...current.resources.values()]
      : st.resourceNames.map((n) => current.resources.get(n)).filter((r) => r !== undefined);
    const nonce = String(++this.nonceCounter);
    st.sentVersion = current.version;
    st.sentNonce = nonce;
    sub.namesAtLastResponse = st.resourceNames.join("\n");
    const anys = st.typeUrl === EXTENSION_CONFIG
      ? this.renderEcds(resources, nonce, current.version, this.fetchedForResend)
      : resources.map((r) => r.anyFor());
    this.deps.send({ version_info: current.version, type_url: st.typeUrl, nonce, resources: anys });
  }

  private renderEcds(resources: EncodedResource[], nonce: string, version: string, fetched: ReadonlySet<string>): DiscoveryResponse["resources"] {
    const updateShas: string[] = [];
    const out = resources.map((r) => {
      const prior = this.sentVariants.get(r.name);
      let nack: boolean;
      if (r.moduleSha256 && fetched.has(r.moduleSha256)) {
        // Envoy has the module cached now. Envoy ignores a config identical to one it rejected,
        // so the re-send must differ: without the cache-miss flag it is a plain cache hit.
        nack = false;
      } else if (prior && prior.sha256 === r.moduleSha256) {
        nack = prior.nack; // unchanged module: identical bytes, Envoy sees no change
      } else {
        // New to this Envoy: a warm filter takes the cache-miss path, a warming one fetches on init.
        nack = this.warmFilters.has(r.name);
        if (nack && r.moduleSha256) updateShas.push(r.moduleSha256);
      }
      this.sentVariants.set(r.name, { sha256: r.moduleSha256, nack });
      return r.anyFor({ nodeId: this.client.nodeId, nackOnCacheMiss: nack });
    });
    this.ecdsSent = { nonce, version, sentAt: Date.now(), updateShas: [...new Set(updateShas)], afterFetch: fetched.size > 0 };
    return out;
  }
}
