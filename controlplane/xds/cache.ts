import { changedTypes, type Snapshot } from "./snapshot.ts";

export type SnapshotListener = (snapshot: Snapshot, changed: readonly string[]) => void;

/**
 * Holds the newest snapshot between the producer (registry + state) and the xDS streams, the
 * way go-control-plane separates its cache from its server: producers only `set`, streams only
 * read and watch.
 */
export class SnapshotCache {
  private current: Snapshot | undefined;
  private readonly listeners = new Set<SnapshotListener>();

  get(): Snapshot | undefined {
    return this.current;
  }

  /** Replaces the snapshot; listeners hear of it only when some type's version changed. */
  set(next: Snapshot): string[] {
    const changed = changedTypes(this.current, next);
    this.current = next;
    if (changed.length > 0) for (const listener of this.listeners) listener(next, changed);
    return changed;
  }

  watch(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
