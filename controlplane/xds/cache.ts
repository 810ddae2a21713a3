import { changedTypes, type EncodedResource, type Snapshot } from "./snapshot.ts";

/** The group of Envoys no targeting rule singles out. */
export const DEFAULT_GROUP = "";

/** What a snapshot may depend on about an Envoy. */
export interface NodeKey {
  id: string;
  cluster: string;
}

/**
 * How Envoys map to snapshots. `groupOf` names the group of a node (nodes that must see the same
 * resources share one); `build` makes a group's snapshot on first use. Without a policy every
 * Envoy is in the default group.
 */
export interface GroupPolicy {
  groupOf(node: NodeKey): string;
  build(group: string): Snapshot;
}

export type SnapshotListener = () => void;

/** Resource versions kept per resource, so a rejected one can fall back to an older good one. */
const HISTORY_PER_RESOURCE = 8;

/**
 * Holds the newest snapshot of every node group between the producer (registry + state) and the
 * xDS streams, the way go-control-plane separates its cache from its server: producers only set
 * snapshots, streams only read theirs (by node) and watch. It also remembers recent versions of
 * each resource and which versions some Envoy rejected, so a new Envoy is never handed a
 * version another one already NACKed.
 */
export class SnapshotCache {
  private readonly byGroup = new Map<string, Snapshot>();
  private readonly listeners = new Set<SnapshotListener>();
  private readonly history = new Map<string, EncodedResource[]>();
  private readonly rejected = new Set<string>();
  private readonly accepted = new Set<string>();
  private policy: GroupPolicy | undefined;

  setPolicy(policy: GroupPolicy): void {
    this.policy = policy;
  }

  /** The snapshot of a group; a group not yet built is built now (if a policy says how). */
  get(group: string = DEFAULT_GROUP): Snapshot | undefined {
    let snapshot = this.byGroup.get(group);
    if (!snapshot && this.policy && this.byGroup.has(DEFAULT_GROUP)) {
      snapshot = this.policy.build(group);
      this.byGroup.set(group, snapshot);
      this.remember(snapshot);
    }
    return snapshot ?? this.byGroup.get(DEFAULT_GROUP);
  }

  /** The snapshot an Envoy is served. */
  getFor(node: NodeKey): Snapshot | undefined {
    return this.get(this.groupOf(node));
  }

  groupOf(node: NodeKey): string {
    return this.policy?.groupOf(node) ?? DEFAULT_GROUP;
  }

  /** Groups with a snapshot (the default one included). */
  groups(): string[] {
    return [...this.byGroup.keys()];
  }

  /**
   * Replaces the snapshots of the given groups at once (others are dropped and rebuilt on
   * demand), then wakes every stream, which diffs its own snapshot against what it saw.
   * Returns the types whose version changed in any group.
   */
  publish(snapshots: ReadonlyMap<string, Snapshot>, beforeWake?: (changed: string[]) => void): string[] {
    const changed = new Set<string>();
    for (const [group, next] of snapshots) {
      for (const t of changedTypes(this.byGroup.get(group), next)) changed.add(t);
      this.remember(next);
    }
    for (const group of this.byGroup.keys()) if (!snapshots.has(group)) changed.add("*");
    this.byGroup.clear();
    for (const [group, next] of snapshots) this.byGroup.set(group, next);
    // Always wake streams: a targeting change can move an Envoy to another group even when no
    // group's snapshot changed; each stream diffs its own snapshot, so a no-op costs little.
    const result = [...changed].filter((t) => t !== "*");
    // Announced (snapshot.published) before the streams push what changed, so events keep causal order.
    beforeWake?.(result);
    for (const listener of this.listeners) listener();
    return result;
  }

  /** Replaces one group's snapshot (the default one by default). */
  set(next: Snapshot, group: string = DEFAULT_GROUP): string[] {
    const changed = changedTypes(this.byGroup.get(group) ?? this.get(group), next);
    this.byGroup.set(group, next);
    this.remember(next);
    if (changed.length > 0) for (const listener of this.listeners) listener();
    return changed;
  }

  watch(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Some Envoy rejected this version of this resource. */
  reject(typeUrl: string, name: string, version: string): void {
    this.rejected.add(`${typeUrl}\n${name}\n${version}`);
  }

  /** Some Envoy ACKed this version of this resource. */
  accept(typeUrl: string, name: string, version: string): void {
    this.accepted.add(`${typeUrl}\n${name}\n${version}`);
  }

  isRejected(typeUrl: string, name: string, version: string): boolean {
    return this.rejected.has(`${typeUrl}\n${name}\n${version}`);
  }

  /**
   * The newest remembered version of a resource that some Envoy ACKed and none rejected, if any:
   * a fallback known to work, never a combination nobody ran.
   */
  newestAccepted(typeUrl: string, name: string): EncodedResource | undefined {
    const versions = this.history.get(`${typeUrl}\n${name}`) ?? [];
    for (let i = versions.length - 1; i >= 0; i--) {
      const r = versions[i]!;
      const key = `${typeUrl}\n${name}\n${r.version}`;
      if (this.accepted.has(key) && !this.rejected.has(key)) return r;
    }
    return undefined;
  }

  /** A remembered resource by its version (what an Envoy ACKed may be older than the snapshot). */
  resourceAt(typeUrl: string, name: string, version: string): EncodedResource | undefined {
    return this.history.get(`${typeUrl}\n${name}`)?.find((r) => r.version === version);
  }

  private remember(snapshot: Snapshot): void {
    for (const [typeUrl, t] of snapshot.types) {
      for (const r of t.resources.values()) {
        const key = `${typeUrl}\n${r.name}`;
        const versions = this.history.get(key) ?? [];
        if (versions.at(-1)?.version === r.version) continue;
        const kept = versions.filter((old) => old.version !== r.version);
        kept.push(r);
        this.history.set(key, kept.slice(-HISTORY_PER_RESOURCE));
      }
    }
  }
}
