import type { EnvoyNode } from "./discovery-types.ts";
import { changedTypes, type EncodedResource, type Snapshot } from "./snapshot.ts";

/** The group every Envoy falls back to when its own group has no snapshot. */
export const DEFAULT_GROUP = "";

export type SnapshotListener = (snapshot: Snapshot, changed: readonly string[], group: string) => void;

/** Envoys are grouped by node.cluster: one fleet role, one filter set. */
export function groupOf(node: Pick<EnvoyNode, "cluster">): string {
  return node.cluster ?? "";
}

/** Resource versions kept per resource, so a rejected one can fall back to an older good one. */
const HISTORY_PER_RESOURCE = 8;

/**
 * Holds the newest snapshot per node group between the producer (registry + state) and the xDS
 * streams, the way go-control-plane separates its cache from its server: producers only `set`,
 * streams only read and watch. An Envoy whose group has no snapshot of its own gets the default
 * group's. The cache also remembers recent versions of each resource and which versions some
 * Envoy rejected, so a new Envoy is never handed a version another one already NACKed.
 */
export class SnapshotCache {
  private readonly byGroup = new Map<string, Snapshot>();
  private readonly listeners = new Set<SnapshotListener>();
  private readonly history = new Map<string, EncodedResource[]>();
  private readonly rejected = new Set<string>();

  /** The snapshot for `group` (or the default one). */
  get(group: string = DEFAULT_GROUP): Snapshot | undefined {
    return this.byGroup.get(group) ?? this.byGroup.get(DEFAULT_GROUP);
  }

  /** Groups with a snapshot of their own (besides the default). */
  groups(): string[] {
    return [...this.byGroup.keys()].filter((g) => g !== DEFAULT_GROUP);
  }

  /** Replaces a group's snapshot; listeners hear of it only when some type's version changed. */
  set(next: Snapshot, group: string = DEFAULT_GROUP): string[] {
    const changed = changedTypes(this.get(group), next);
    this.byGroup.set(group, next);
    this.remember(next);
    if (changed.length > 0) for (const listener of this.listeners) listener(next, changed, group);
    return changed;
  }

  /** Drops a group's own snapshot: its Envoys fall back to the default group's. */
  delete(group: string): void {
    const before = this.byGroup.get(group);
    if (group === DEFAULT_GROUP || !before) return;
    this.byGroup.delete(group);
    const fallback = this.get(DEFAULT_GROUP);
    if (!fallback) return;
    const changed = changedTypes(before, fallback);
    if (changed.length > 0) for (const listener of this.listeners) listener(fallback, changed, group);
  }

  /** Whether a change published for `group` concerns an Envoy of `nodeGroup`. */
  concerns(group: string, nodeGroup: string): boolean {
    return group === nodeGroup || (group === DEFAULT_GROUP && !this.byGroup.has(nodeGroup));
  }

  watch(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Some Envoy rejected this version of this resource. */
  reject(typeUrl: string, name: string, version: string): void {
    this.rejected.add(`${typeUrl}\n${name}\n${version}`);
  }

  isRejected(typeUrl: string, name: string, version: string): boolean {
    return this.rejected.has(`${typeUrl}\n${name}\n${version}`);
  }

  /** The newest remembered version of a resource that no Envoy rejected, if any. */
  newestAccepted(typeUrl: string, name: string): EncodedResource | undefined {
    const versions = this.history.get(`${typeUrl}\n${name}`) ?? [];
    for (let i = versions.length - 1; i >= 0; i--) {
      const r = versions[i]!;
      if (!this.isRejected(typeUrl, name, r.version)) return r;
    }
    return undefined;
  }

  private remember(snapshot: Snapshot): void {
    for (const [typeUrl, t] of snapshot.types) {
      for (const r of t.resources.values()) {
        const key = `${typeUrl}\n${r.name}`;
        const versions = (this.history.get(key) ?? []).filter((old) => old.version !== r.version);
        versions.push(r);
        this.history.set(key, versions.slice(-HISTORY_PER_RESOURCE));
      }
    }
  }
}
