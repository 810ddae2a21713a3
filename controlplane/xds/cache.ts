import { changedTypes, type EncodedResource, type Snapshot } from "./snapshot.ts";

/** The group of Envoys no targeting rule singles out. */
export const DEFAULT_GROUP = "";

/** What a snapshot may depend on about an Envoy. */
export interface NodeKey {
  id: string;
  cluster: string;
  /**
   * The Envoy takes only ECDS from us (its own listeners; docs/ecds-only.md): it gets a snapshot
   * of its own, in which a disabled filter is a native no-op. Absent: false.
   */
  ecdsOnly?: boolean;
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
/** Rejected versions remembered per node group (oldest forgotten first): bounded whatever NACKs arrive. */
const REJECTIONS_PER_GROUP = 1024;

/**
 * What NACKs and ACKs of one node group taught: which resource versions an Envoy of the group
 * rejected, and, per resource, the versions one of them accepted (newest last). Kept apart from
 * the snapshot history so that no amount of later changes can forget the last good version.
 */
class GroupVerdicts {
  private readonly rejected = new Set<string>();
  private readonly accepted = new Map<string, EncodedResource[]>();

  reject(typeUrl: string, name: string, version: string): void {
    const key = `${typeUrl}\n${name}\n${version}`;
    this.rejected.delete(key);
    this.rejected.add(key);
    if (this.rejected.size > REJECTIONS_PER_GROUP) this.rejected.delete(this.rejected.values().next().value!);
  }

  isRejected(typeUrl: string, name: string, version: string): boolean {
    // Asked for every resource of every push: without a rejection no key is built.
    return this.rejected.size > 0 && this.rejected.has(`${typeUrl}\n${name}\n${version}`);
  }

  /** Whether `version` is already the newest accepted (every ACK of an unchanged resource asks). */
  isNewest(typeUrl: string, name: string, version: string): boolean {
    return this.accepted.get(`${typeUrl}\n${name}`)?.at(-1)?.version === version;
  }

  accept(typeUrl: string, resource: EncodedResource): void {
    const key = `${typeUrl}\n${resource.name}`;
    const versions = (this.accepted.get(key) ?? []).filter((r) => r.version !== resource.version);
    versions.push(resource);
    this.accepted.set(key, versions.slice(-HISTORY_PER_RESOURCE));
  }

  newestAccepted(typeUrl: string, name: string): EncodedResource | undefined {
    const versions = this.accepted.get(`${typeUrl}\n${name}`) ?? [];
    for (let i = versions.length - 1; i >= 0; i--) {
      if (!this.isRejected(typeUrl, name, versions[i]!.version)) return versions[i];
    }
    return undefined;
  }
}

/**
 * The NACK policy, as one stream sees it (README "What a NACK changes"). Envoys of one node
 * group are sent identical resources, so a version one authenticated Envoy of the group rejected
 * is withheld from the others of that group that ask later; they get the newest version an Envoy
 * of the same group accepted instead, or, when there is none, the current one: never nothing,
 * since a resource left out of a SotW response means "delete it". Other groups are untouched.
 */
export interface RejectionView {
  accept(typeUrl: string, name: string, version: string): void;
  reject(typeUrl: string, name: string, version: string): void;
  isRejected(typeUrl: string, name: string, version: string): boolean;
  /** What to send in place of a rejected version, if anything better is known. */
  newestAccepted(typeUrl: string, name: string): EncodedResource | undefined;
}

/**
 * A stream's RejectionView. A class, not an object of arrow functions: one is made per stream,
 * and under tsx (esbuild keepNames) every named arrow carries its own `name` property store,
 * a few hundred bytes per stream each (measured in a heap snapshot of 1,000 idle streams).
 */
class GroupRejections implements RejectionView {
  constructor(
    private readonly cache: SnapshotCache,
    private readonly verdicts: Map<string, GroupVerdicts>,
    private readonly group: () => string,
  ) {}

  private of(): GroupVerdicts {
    const g = this.group();
    let v = this.verdicts.get(g);
    if (!v) this.verdicts.set(g, (v = new GroupVerdicts()));
    return v;
  }

  reject(typeUrl: string, name: string, version: string): void {
    // A native no-op is valid wherever it is allowed: its NACK says that this Envoy's type_urls
    // lack it, which is no verdict on the version for the group (docs/ecds-only.md).
    if (this.cache.resourceAt(typeUrl, name, version)?.nativeNoop) return;
    this.of().reject(typeUrl, name, version);
  }

  isRejected(typeUrl: string, name: string, version: string): boolean {
    return this.verdicts.get(this.group())?.isRejected(typeUrl, name, version) ?? false;
  }

  accept(typeUrl: string, name: string, version: string): void {
    const verdicts = this.of();
    if (verdicts.isNewest(typeUrl, name, version)) return;
    // What an Envoy ACKs was sent moments ago, so the history still holds it.
    const resource = this.cache.resourceAt(typeUrl, name, version);
    if (resource) verdicts.accept(typeUrl, resource);
  }

  newestAccepted(typeUrl: string, name: string): EncodedResource | undefined {
    return this.verdicts.get(this.group())?.newestAccepted(typeUrl, name);
  }
}

export class SnapshotCache {
  private readonly byGroup = new Map<string, Snapshot>();
  private readonly listeners = new Set<SnapshotListener>();
  private readonly history = new Map<string, EncodedResource[]>();
  private readonly verdicts = new Map<string, GroupVerdicts>();
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

  /** The NACK policy for a stream whose Envoy is in `group()` (read at each call: targeting moves nodes). */
  rejectionsFor(group: () => string): RejectionView {
    return new GroupRejections(this, this.verdicts, group);
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
