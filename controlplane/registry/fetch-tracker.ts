export type FetchListener = (nodeId: string, sha256: string) => void;

interface FetchRecord {
  inFlight: number;
  lastCompletedAt?: number;
}

/**
 * Which Envoy fetched which module, and when the last fetch finished. The module server writes
 * it (the node id is in the module URL's query); xDS streams read it to know when an Envoy that
 * NACKed a code-cache miss has the module and can be sent the same config again.
 */
export class FetchTracker {
  private readonly records = new Map<string, FetchRecord>();
  /** Listeners by node id: a download wakes only that Envoy's streams, not the whole fleet. */
  private readonly listeners = new Map<string, Set<FetchListener>>();

  private key(nodeId: string, sha256: string): string {
    return `${nodeId}\n${sha256}`;
  }

  started(nodeId: string, sha256: string): void {
    const k = this.key(nodeId, sha256);
    const r = this.records.get(k) ?? { inFlight: 0 };
    r.inFlight++;
    this.records.set(k, r);
  }

  /** A fetch ended; `finished` is false when it was aborted (it then does not count as "done"). */
  completed(nodeId: string, sha256: string, finished = true): void {
    const r = this.records.get(this.key(nodeId, sha256));
    if (!r) return;
    r.inFlight = Math.max(0, r.inFlight - 1);
    if (finished) r.lastCompletedAt = Date.now();
    for (const listener of this.listeners.get(nodeId) ?? []) listener(nodeId, sha256);
  }

  /** "in-flight" while a fetch runs; "done" if one finished at or after `since`; else "none". */
  state(nodeId: string, sha256: string, since: number): "in-flight" | "done" | "none" {
    const r = this.records.get(this.key(nodeId, sha256));
    if (!r) return "none";
    if (r.inFlight > 0) return "in-flight";
    return r.lastCompletedAt !== undefined && r.lastCompletedAt >= since ? "done" : "none";
  }

  /** Calls `listener` when a download by `nodeId` ends. */
  onCompleted(nodeId: string, listener: FetchListener): () => void {
    const set = this.listeners.get(nodeId) ?? new Set();
    set.add(listener);
    this.listeners.set(nodeId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(nodeId) === set) this.listeners.delete(nodeId);
    };
  }
}
