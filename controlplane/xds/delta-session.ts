import type { TypeStatus } from "./client-status.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from "./discovery-types.ts";
import { EcdsDelivery, type EcdsSent } from "./ecds-delivery.ts";
import {
  checkResourceNames, MAX_NAMES_PER_REQUEST, ProtocolError, RESOURCE_EXHAUSTED, SessionBase, type SessionDeps,
} from "./session-common.ts";
import type { EncodedResource, Snapshot } from "./snapshot.ts";
import { CLUSTER, EXTENSION_CONFIG, LISTENER, PUSH_ORDER } from "./type-urls.ts";

/** Types Envoy subscribes to by wildcard (an empty first subscription, or "*"). */
const WILDCARD_TYPES = new Set([CLUSTER, LISTENER]);
const WILDCARD = "*";
/** Responses awaiting an ACK per type; Envoy ACKs each, so a handful suffices. */
const MAX_OUTSTANDING = 16;

interface Outstanding {
  version: string;
  names: string[];
  versions: string[];
  ecds?: EcdsSent;
}

interface DeltaSubscription {
  status: TypeStatus;
  wildcard: boolean;
  names: Set<string>;
  /** What this Envoy holds (or was last sent), per resource: the basis of every diff. */
  known: Map<string, string>;
  /** Whether anything was sent on this subscription yet (a reconnect may need nothing). */
  sentAny: boolean;
  outstanding: Map<string, Outstanding>;
}

/**
 * The incremental (Delta) protocol for one stream, on the same snapshots as SotW: only
 * resources whose version differs from what this Envoy holds are sent, vanished ones are
 * named in removed_resources, and a reconnecting Envoy's initial_resource_versions are honoured.
 */
export class DeltaSession extends SessionBase<DeltaDiscoveryResponse> {
  private readonly subscriptions = new Map<string, DeltaSubscription>();
  private readonly ecds: EcdsDelivery;
  private lastEcdsNames: string[] = [];

  constructor(streamId: number, peer: string, deps: SessionDeps<DeltaDiscoveryResponse>) {
    super(streamId, peer, deps);
    // Methods, not arrows: see GroupRejections (cache.ts) on what an arrow costs per stream under tsx.
    const session = this;
    this.ecds = new EcdsDelivery((nack, afterFetch) => this.variant(nack, afterFetch), deps.fetches, {
      resend(names, fetched) {
        session.client.cacheMissResends = session.ecds.resends;
        session.deps.registry.resentAfterFetch(session.client, [...fetched]);
        const sub = session.subscriptions.get(EXTENSION_CONFIG);
        const snapshot = session.deps.snapshot();
        if (sub && snapshot) session.respond(sub, snapshot, { force: new Set(names), fetched });
      },
      reject(message) {
        const sub = session.subscriptions.get(EXTENSION_CONFIG);
        if (!sub) return;
        const sent = [...sub.known].map(([name, version]) => ({ name, version }));
        const suspects = sent.filter((r) => session.lastEcdsNames.includes(r.name));
        session.recordNack(sub.status, sub.status.sentVersion ?? "", sub.status.sentNonce ?? "", message, suspects);
      },
      flushDeferred() {
        const sub = session.subscriptions.get(EXTENSION_CONFIG);
        const snapshot = session.deps.snapshot();
        if (sub && snapshot) session.respond(sub, snapshot);
      },
    }, deps.cacheMissGraceMs);
  }

  handleRequest(req: DeltaDiscoveryRequest): void {
    const typeUrl = this.admit(req.node, req.type_url);
    this.checkNonce(req.response_nonce);
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    checkResourceNames(subscribe, "resource_names_subscribe");
    checkResourceNames(unsubscribe, "resource_names_unsubscribe");
    checkResourceNames(Object.keys(req.initial_resource_versions ?? {}), "initial_resource_versions");
    let sub = this.subscriptions.get(typeUrl);
    const fresh = sub === undefined;
    if (!sub) {
      const status: TypeStatus = { typeUrl, resourceNames: [] };
      const initial = Object.entries(req.initial_resource_versions ?? {});
      sub = {
        status,
        // Legacy wildcard: the first request of a wildcard type names nothing.
        wildcard: WILDCARD_TYPES.has(typeUrl) && subscribe.length === 0,
        names: new Set(),
        known: new Map(initial),
        outstanding: new Map(),
        sentAny: false,
      };
      this.subscriptions.set(typeUrl, sub);
      this.client.types.set(typeUrl, status);
      if (typeUrl === EXTENSION_CONFIG) this.ecds.markWarm(initial.map(([n]) => n));
    }
    for (const n of subscribe) {
      if (n === WILDCARD) sub.wildcard = true;
      else sub.names.add(n);
    }
    if (sub.names.size > MAX_NAMES_PER_REQUEST) {
      throw new ProtocolError(RESOURCE_EXHAUSTED, `subscribed to ${sub.names.size} resources of one type (at most ${MAX_NAMES_PER_REQUEST})`);
    }
    for (const n of unsubscribe) {
      if (n === WILDCARD) {
        sub.wildcard = false;
        continue;
      }
      sub.names.delete(n);
      // Forget what it holds: a later re-subscription must send the resource again.
      sub.known.delete(n);
      if (typeUrl === EXTENSION_CONFIG) this.ecds.forget(n);
    }
    // An ACK names nothing: the sorted list for the API is rebuilt only when names change.
    if (subscribe.length > 0 || unsubscribe.length > 0 || fresh) {
      sub.status.resourceNames = sub.wildcard ? [WILDCARD, ...[...sub.names].sort()] : [...sub.names].sort();
    }

    const nonce = req.response_nonce ?? "";
    const answered = nonce === "" ? undefined : sub.outstanding.get(nonce);
    if (answered) {
      sub.outstanding.delete(nonce);
      if (req.error_detail) this.onNack(sub, nonce, answered, req.error_detail.message ?? "");
      else {
        sub.status.ackedVersion = answered.version;
        const acked = { ...sub.status.ackedResources };
        answered.names.forEach((n, i) => (acked[n] = answered.versions[i]!));
        sub.status.ackedResources = acked;
        this.deps.registry.acked(this.client, typeUrl, answered.version);
        this.recordAck(typeUrl, answered.names, answered.versions);
        if (typeUrl === EXTENSION_CONFIG) this.ecds.markWarm(answered.names);
      }
    }
    const snapshot = this.deps.snapshot();
    // A plain ACK of a snapshot this stream already reacted to needs no diff: `known` took what
    // was sent when it was sent, so nothing can differ (a fan-out diffed every stream twice).
    const plainAck = answered !== undefined && !req.error_detail && !fresh && subscribe.length === 0 && unsubscribe.length === 0;
    if (snapshot && !(plainAck && snapshot === this.seen)) this.respond(sub, snapshot);
  }

  /** Pushes what a new snapshot changed for this Envoy, in push order (clusters first). */
  handleSnapshot(snapshot: Snapshot, changed: readonly string[] = this.changedSinceSeen(snapshot)): void {
    this.seen = snapshot;
    for (const typeUrl of PUSH_ORDER) {
      const sub = this.subscriptions.get(typeUrl);
      if (!sub || !changed.includes(typeUrl)) continue;
      // A push of a module Envoy is still downloading waits in respond() (mustDefer).
      if (typeUrl === EXTENSION_CONFIG) this.ecds.cancel();
      this.respond(sub, snapshot);
    }
  }

  override close(): void {
    this.ecds.close();
    super.close();
  }

  private onNack(sub: DeltaSubscription, nonce: string, answered: Outstanding, message: string): void {
    if (answered.ecds && this.ecds.onNack(answered.ecds, message)) {
      this.deps.log.info({ node: this.client.nodeId, shas: answered.ecds.updateShas, envoy: message }, "ECDS NACK on a new module; re-sending once Envoy has fetched it");
      return;
    }
    // `known` already holds the rejected versions, so they are not re-sent; the next change is.
    this.recordNack(sub.status, answered.version, nonce, message, answered.names.map((name, i) => ({ name, version: answered.versions[i]! })));
  }

  // Loops, not array chains: every stream diffs on every change (a fan-out's allocations are GC).
  private diff(sub: DeltaSubscription, snapshot: Snapshot, force?: ReadonlySet<string>): { updates: EncodedResource[]; removed: string[] } {
    const typeUrl = sub.status.typeUrl;
    const current = snapshot.types.get(typeUrl)?.resources;
    const updates: EncodedResource[] = [];
    if (current) {
      for (const resource of current.values()) {
        if (!sub.wildcard && !sub.names.has(resource.name)) continue;
        const r = this.pickOne(typeUrl, resource);
        if (force?.has(r.name) || sub.known.get(r.name) !== r.version) updates.push(r);
      }
    }
    let removed: string[] | undefined;
    for (const n of sub.known.keys()) {
      if (current?.has(n) || !(sub.wildcard || sub.names.has(n))) continue;
      (removed ??= []).push(n);
    }
    return { updates, removed: removed?.sort() ?? [] };
  }

  /** Sends what this Envoy lacks; returns whether anything was sent. */
  private respond(
    sub: DeltaSubscription,
    snapshot: Snapshot,
    opts: { force?: ReadonlySet<string>; fetched?: ReadonlySet<string> } = {},
  ): boolean {
    const { updates, removed } = this.diff(sub, snapshot, opts.force);
    if (updates.length === 0 && removed.length === 0) {
      if (!sub.sentAny && sub.known.size > 0 && sub.status.ackedVersion === undefined) {
        // A reconnecting Envoy whose initial_resource_versions are all current: in sync as is.
        sub.status.ackedVersion = sub.status.sentVersion = snapshot.types.get(sub.status.typeUrl)?.version ?? "";
      }
      return false;
    }
    const typeUrl = sub.status.typeUrl;
    // Whatever asked for it (a new snapshot, new names): a module Envoy is still downloading is not
    // announced (ecds-delivery.ts mustDefer); the download's end sends it (flushDeferred).
    if (!opts.force && typeUrl === EXTENSION_CONFIG && this.ecds.mustDefer(updates)) return false;
    const version = snapshot.types.get(typeUrl)?.version ?? "";
    const nonce = this.nextNonce();
    let anys;
    const outstanding: Outstanding = { version, names: updates.map((r) => r.name), versions: updates.map((r) => r.version) };
    if (typeUrl === EXTENSION_CONFIG) {
      const rendered = this.ecds.render(updates, opts.fetched);
      anys = rendered.anys;
      outstanding.ecds = rendered.sent;
      this.lastEcdsNames = outstanding.names;
    } else {
      anys = updates.map((r) => r.anyFor(this.variant()));
    }
    for (const r of updates) sub.known.set(r.name, r.version);
    for (const n of removed) sub.known.delete(n);
    sub.outstanding.set(nonce, outstanding);
    sub.sentAny = true;
    if (sub.outstanding.size > MAX_OUTSTANDING) sub.outstanding.delete(sub.outstanding.keys().next().value!);
    sub.status.sentVersion = version;
    sub.status.sentNonce = nonce;
    const named = removed.length === 0 ? outstanding.names : [...outstanding.names, ...removed.map((n) => `-${n}`)];
    this.deps.registry.pushed(this.client, typeUrl, version, nonce, named);
    this.deps.send({
      system_version_info: version,
      type_url: typeUrl,
      nonce,
      resources: updates.map((r, i) => ({ name: r.name, version: r.version, resource: anys[i]! })),
      removed_resources: removed,
    });
    return true;
  }
}
