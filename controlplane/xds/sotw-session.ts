import type { TypeStatus } from "./client-status.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import { EcdsDelivery, type EcdsSent } from "./ecds-delivery.ts";
import { checkResourceNames, SessionBase, type SessionDeps } from "./session-common.ts";
import type { EncodedResource, Snapshot } from "./snapshot.ts";
import { CLUSTER, EXTENSION_CONFIG, LISTENER, PUSH_ORDER } from "./type-urls.ts";

export { ProtocolError } from "./session-common.ts";
export { RESEND_AFTER_FETCH_MS } from "./ecds-delivery.ts";

/** Types whose empty resource_names means "everything" (wildcard), per the xDS spec. */
const WILDCARD_TYPES = new Set([CLUSTER, LISTENER]);

interface Subscription {
  status: TypeStatus;
  wildcard: boolean;
  /**
   * The version a reconnecting Envoy said it holds (version_info on a request with no nonce,
   * before this stream sent it anything). Versions are content hashes over every resource of
   * the type (snapshot.ts versionOf): they prove what the Envoy holds only when it asks for all.
   */
  envoyHas?: string;
  /** Sorted names of the last response; a request naming a different set gets a response. */
  namesAtLastResponse?: string;
  /** Resource versions of the last response, and of the last ACKed one (to name NACK suspects). */
  sentResources: Map<string, string>;
  ackedResources: Map<string, string>;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The state-of-the-world protocol for one stream, without gRPC: requests, snapshot changes
 * and module-fetch completions go in, responses go out through `send`.
 */
export class SotwSession extends SessionBase<DiscoveryResponse> {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly ecds: EcdsDelivery;
  private ecdsSent: { nonce: string; sent: EcdsSent } | undefined;

  constructor(streamId: number, peer: string, deps: SessionDeps<DiscoveryResponse>) {
    super(streamId, peer, deps);
    // Methods, not arrows: see GroupRejections (cache.ts) on what an arrow costs per stream under tsx.
    const session = this;
    this.ecds = new EcdsDelivery((nack, afterFetch) => this.variant(nack, afterFetch), deps.fetches, {
      resend(_names, fetched) {
        session.resendEcds(fetched);
      },
      reject(message) {
        const sub = session.subscriptions.get(EXTENSION_CONFIG);
        if (sub) session.rejectLastResponse(sub, message);
      },
      flushDeferred() {
        const sub = session.subscriptions.get(EXTENSION_CONFIG);
        const snapshot = session.deps.snapshot();
        if (sub && snapshot) session.respond(sub, snapshot, false);
      },
    }, deps.cacheMissGraceMs);
  }

  handleRequest(req: DiscoveryRequest): void {
    const typeUrl = this.admit(req.node, req.type_url);
    this.checkNonce(req.response_nonce);
    const requested = req.resource_names ?? [];
    checkResourceNames(requested);
    let sub = this.subscriptions.get(typeUrl);
    // An ACK names what it named before (sorted, unique): the list is reused, not rebuilt.
    const names = sub && sameNames(requested, sub.status.resourceNames)
      ? sub.status.resourceNames
      : [...new Set(requested)].sort();
    const nonce = req.response_nonce ?? "";
    const snapshot = this.deps.snapshot();
    if (!sub) {
      const status: TypeStatus = { typeUrl, resourceNames: names };
      sub = { status, wildcard: false, sentResources: new Map(), ackedResources: new Map() };
      this.subscriptions.set(typeUrl, sub);
      this.client.types.set(typeUrl, status);
    }
    const st = sub.status;
    // An answer to a response we have since superseded: the newer one is still coming.
    if (nonce !== "" && nonce !== st.sentNonce) return;

    if (nonce !== "") {
      if (req.error_detail) this.onNack(sub, req.error_detail.message ?? "");
      else {
        st.ackedVersion = req.version_info ?? "";
        this.deps.registry.acked(this.client, typeUrl, st.ackedVersion);
        // Maps of sent versions are replaced, never changed in place: the ACKed one is shared.
        if (sub.ackedResources !== sub.sentResources) {
          sub.ackedResources = sub.sentResources;
          st.ackedResources = Object.fromEntries(sub.ackedResources);
        }
        this.recordAck(typeUrl, [...sub.ackedResources.keys()], [...sub.ackedResources.values()]);
        if (typeUrl === EXTENSION_CONFIG) this.ecds.markWarm(st.resourceNames);
      }
    } else if (req.version_info && st.sentVersion === undefined) {
      // A reconnecting Envoy, before this stream answered it: it runs its filters already (an
      // update must take the cache-miss path); whether it holds all it names, respond() checks.
      if (typeUrl === EXTENSION_CONFIG) this.ecds.markWarm(names);
      sub.envoyHas = req.version_info;
    }
    if (typeUrl === EXTENSION_CONFIG && names !== st.resourceNames) {
      const now = new Set(names);
      for (const n of st.resourceNames) if (!now.has(n)) this.ecds.forget(n);
    }
    st.resourceNames = names;
    sub.wildcard = names.length === 0 && WILDCARD_TYPES.has(typeUrl);
    if (typeUrl === EXTENSION_CONFIG && this.ecds.awaitingFetch) return; // the re-send carries the names too
    // (Before the first response there is nothing to compare: respond() decides on versions.)
    const namesChanged = sub.namesAtLastResponse !== undefined && sub.namesAtLastResponse !== names.join("\n");
    if (snapshot) this.respond(sub, snapshot, namesChanged);
  }

  /** Pushes what a new snapshot changed for this Envoy, in push order (clusters first). */
  handleSnapshot(snapshot: Snapshot, changed: readonly string[] = this.changedSinceSeen(snapshot)): void {
    this.seen = snapshot;
    for (const typeUrl of PUSH_ORDER) {
      const sub = this.subscriptions.get(typeUrl);
      if (!sub || !changed.includes(typeUrl)) continue;
      // A push of a module Envoy is still downloading waits in respond() (mustDefer).
      if (typeUrl === EXTENSION_CONFIG) this.ecds.cancel();
      this.respond(sub, snapshot, false);
    }
  }

  override close(): void {
    this.ecds.close();
    super.close();
  }

  get cacheMissResends(): number {
    return this.ecds.resends;
  }

  private onNack(sub: Subscription, message: string): void {
    const st = sub.status;
    const e = this.ecdsSent;
    if (st.typeUrl === EXTENSION_CONFIG && e && e.nonce === st.sentNonce && this.ecds.onNack(e.sent, message)) {
      this.deps.log.info({ node: this.client.nodeId, version: st.sentVersion, shas: e.sent.updateShas, envoy: message }, "ECDS NACK on a new module; re-sending once Envoy has fetched it");
      return;
    }
    this.rejectLastResponse(sub, message);
  }

  /** SotW NACKs a whole response; the suspects are the resources it changed for this Envoy. */
  private rejectLastResponse(sub: Subscription, message: string): void {
    const suspects = [...sub.sentResources].filter(([name, version]) => sub.ackedResources.get(name) !== version).map(([name, version]) => ({ name, version }));
    this.recordNack(sub.status, sub.status.sentVersion ?? "", sub.status.sentNonce ?? "", message, suspects);
  }

  private resendEcds(fetched: ReadonlySet<string>): void {
    const sub = this.subscriptions.get(EXTENSION_CONFIG);
    const snapshot = this.deps.snapshot();
    this.client.cacheMissResends = this.ecds.resends;
    this.deps.registry.resentAfterFetch(this.client, [...fetched]);
    if (sub && snapshot) this.respond(sub, snapshot, true, fetched);
  }

  /**
   * The resources of an update that differ from what this Envoy ACKed, when sending just those
   * is enough: outside Listener and Cluster (whose SotW responses are the whole state, and an
   * omission a removal), a SotW response may carry a subset and Envoy leaves the resources it
   * does not carry as they are (xDS protocol, "Grouping Resources into Responses"). A module
   * change then costs each Envoy one ECDS resource, not every filter's. Undefined (send all)
   * when the last response is not ACKed yet or was NACKed (what Envoy holds is then not known
   * from one map), when the names changed, or when nothing differs (the response still moves
   * the version Envoy ACKs).
   */
  private changedSinceAck(sub: Subscription, resources: readonly EncodedResource[]): EncodedResource[] | undefined {
    if (WILDCARD_TYPES.has(sub.status.typeUrl) || sub.wildcard) return undefined;
    if (sub.status.sentVersion === undefined || sub.sentResources !== sub.ackedResources) return undefined;
    if (sub.namesAtLastResponse !== sub.status.resourceNames.join("\n")) return undefined;
    const acked = sub.ackedResources;
    const changed = resources.filter((r) => acked.get(r.name) !== r.version);
    return changed.length > 0 && changed.length < resources.length ? changed : undefined;
  }

  private selected(sub: Subscription, snapshot: Snapshot): EncodedResource[] {
    const current = snapshot.types.get(sub.status.typeUrl);
    if (!current) return [];
    if (sub.wildcard) return [...current.resources.values()];
    const out: EncodedResource[] = [];
    for (const n of sub.status.resourceNames) {
      const r = current.resources.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  private respond(sub: Subscription, snapshot: Snapshot, force: boolean, fetched?: ReadonlySet<string>): void {
    const st = sub.status;
    const current = snapshot.types.get(st.typeUrl);
    if (!current) return;
    // A named type with no names is an unsubscription (e.g. the last Wasm filter went away).
    if (!sub.wildcard && st.resourceNames.length === 0) return;
    const wanted = current.version;
    // Sent already (every ACK asks): decided before anything is selected. (The check below
    // returns the same way; the reconnect case needs sentVersion undefined.)
    if (!force && st.sentVersion !== undefined && wanted === st.sentVersion) return;
    const selected = this.selected(sub, snapshot);
    // A type version covers every resource of the type: an Envoy that holds it and asks for all
    // of them holds what it asks for. One that names a subset may have been sent fewer names
    // than it asks for now (a filter added while the control plane was down): answer it.
    const holdsAll = sub.envoyHas === wanted && (sub.wildcard || selected.length === current.resources.size);
    if (!force && st.sentVersion === undefined && holdsAll) {
      // Reconnected holding exactly what it asks for: it reloads nothing, we send nothing.
      st.sentVersion = st.ackedVersion = wanted;
      sub.namesAtLastResponse = st.resourceNames.join("\n");
      sub.sentResources = new Map(selected.map((r) => [r.name, r.version]));
      sub.ackedResources = sub.sentResources;
      st.ackedResources = Object.fromEntries(sub.ackedResources);
      return;
    }
    if (!force && wanted === st.sentVersion) return;
    // Never re-send a version this Envoy rejected; the next different version will go out.
    if (!force && wanted === st.lastNack?.version) return;
    const resources = this.pick(st.typeUrl, selected);
    const substituted = resources.some((r, i) => r !== selected[i]);
    // A response with a fallback for a rejected resource is not the snapshot's version.
    const version = substituted ? `${wanted}-${resources.map((r) => r.version.slice(0, 4)).join("")}` : wanted;
    if (!force && version === st.sentVersion) return;
    const changedOnly = force ? undefined : this.changedSinceAck(sub, resources);
    const outgoing = changedOnly ?? resources;
    // Whatever asked for it (a new snapshot, an ACK, new names): a module Envoy is still downloading
    // is not announced (ecds-delivery.ts mustDefer); the download's end sends it (flushDeferred).
    if (!force && st.typeUrl === EXTENSION_CONFIG && this.ecds.mustDefer(outgoing)) return;
    const nonce = this.nextNonce();
    sub.sentResources = new Map(resources.map((r) => [r.name, r.version]));
    st.sentVersion = version;
    st.sentNonce = nonce;
    sub.namesAtLastResponse = st.resourceNames.join("\n");
    let anys;
    if (st.typeUrl === EXTENSION_CONFIG) {
      const rendered = this.ecds.render(outgoing, fetched);
      this.ecdsSent = { nonce, sent: rendered.sent };
      anys = rendered.anys;
    } else {
      anys = outgoing.map((r) => r.anyFor(this.variant()));
    }
    this.deps.registry.pushed(this.client, st.typeUrl, version, nonce, outgoing.map((r) => r.name));
    this.deps.send({ version_info: version, type_url: st.typeUrl, nonce, resources: anys });
  }
}
