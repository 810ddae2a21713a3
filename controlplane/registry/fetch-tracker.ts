export type FetchListener = (nodeId: string, sha256: string) => void;

interface FetchRecord {
  inFlight: number;
  lastCompletedAt?: number;
}

/**
 * Longest `?node=` value tracked. Envoy node ids are short names; anything longer is not an
 * Envoy of ours and is served but not recorded (the module server listens on every interface).
 */
export const MAX_TRACKED_NODE_ID = 1024;
/**
 * How long a node's records outlive its last xDS stream: an Envoy that reconnects (control
 * plane restart, network blip) while a download runs must still find it "in-flight".
 */
export const RETAIN_AFTER_STREAM_MS = 60_000;

/**
 * Which Envoy fetched which module, and when the last fetch finished. The module server writes
 * it (the node id is in the module URL's query); xDS streams read it to know when an Envoy that
 * NACKed a code-cache miss has the module and can be sent the same config again.
 *
 * Only nodes with a live xDS stream are recorded. The streams that read this are exactly the
 * ones subscribed through `onCompleted` (every ECDS delivery subscribes before it renders a
 * module URL, and unsubscribes when its stream ends), so "has a subscriber" is "has a live
 * stream that can ask": a `?node=` nobody subscribed to is served and not kept. When a node's
 * last subscriber goes, its records are dropped after RETAIN_AFTER_STREAM_MS (in-flight ones
 * when they end). Memory is thus bounded by live streams, not by what clients put in URLs.
 */
export class FetchTracker {
  /** node id -> sha256 -> record. */
  private readonly records = new Map<string, Map<string, FetchRecord>>();
  /** Listeners by node id: a download wakes only that Envoy's streams, not the whole fleet. */
  private readonly listeners = new Map<string, Set<FetchListener>>();
  /** Nodes without a subscriber whose records are kept a while longer, and when they go. */
  private readonly expiry = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(private readonly retainMs = RETAIN_AFTER_STREAM_MS) {}

  /** Records kept, over all nodes (for tests and metrics: it must stay bounded). */
  get size(): number {
    let n = 0;
    for (const bySha of this.records.values()) n += bySha.size;
    return n;
  }

  /** Nodes with records. */
  get nodes(): number {
    return this.records.size;
  }

  /** Whether downloads by `nodeId` are recorded: a live stream subscribed, or it left recently. */
  tracks(nodeId: string): boolean {
    if (nodeId.length > MAX_TRACKED_NODE_ID) return false;
    return this.listeners.has(nodeId) || this.records.has(nodeId);
  }

  started(nodeId: string, sha256: string): void {
    if (!this.tracks(nodeId)) return;
    const bySha = this.records.get(nodeId) ?? new Map<string, FetchRecord>();
    this.records.set(nodeId, bySha);
    const r = bySha.get(sha256) ?? { inFlight: 0 };
    r.inFlight++;
    bySha.set(sha256, r);
  }

  /** A fetch ended; `finished` is false when it was aborted (it then does not count as "done"). */
  completed(nodeId: string, sha256: string, finished = true): void {
    if (nodeId.length > MAX_TRACKED_NODE_ID) return;
    const subscribers = this.listeners.get(nodeId);
    let r = this.records.get(nodeId)?.get(sha256);
    // A download that began before this node's stream subscribed (e.g. across a reconnect)
    // still counts once someone is listening.
    if (!r && subscribers && finished) {
      const bySha = this.records.get(nodeId) ?? new Map<string, FetchRecord>();
      this.records.set(nodeId, bySha);
      r = { inFlight: 1 };
      bySha.set(sha256, r);
    }
    if (r) {
      r.inFlight = Math.max(0, r.inFlight - 1);
      if (finished) r.lastCompletedAt = Date.now();
    }
    for (const listener of subscribers ?? []) listener(nodeId, sha256);
  }

  /** "in-flight" while a fetch runs; "done" if one finished at or after `since`; else "none". */
  state(nodeId: string, sha256: string, since: number): "in-flight" | "done" | "none" {
    const r = this.records.get(nodeId)?.get(sha256);
    if (!r) return "none";
    if (r.inFlight > 0) return "in-flight";
    return r.lastCompletedAt !== undefined && r.lastCompletedAt >= since ? "done" : "none";
  }

  /** Calls `listener` when a download by `nodeId` ends; also marks the node live until unsubscribed. */
  onCompleted(nodeId: string, listener: FetchListener): () => void {
    const set = this.listeners.get(nodeId) ?? new Set();
    set.add(listener);
    this.listeners.set(nodeId, set);
    const pending = this.expiry.get(nodeId);
    if (pending) {
      clearTimeout(pending);
      this.expiry.delete(nodeId);
    }
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(nodeId) === set) {
        this.listeners.delete(nodeId);
        this.scheduleExpiry(nodeId);
      }
    };
  }

  /** Drops a node's finished records `retainMs` after its last subscriber left. */
  private scheduleExpiry(nodeId: string): void {
    if (!this.records.has(nodeId) || this.expiry.has(nodeId)) return;
    const timer = setTimeout(() => {
      this.expiry.delete(nodeId);
      if (this.listeners.has(nodeId)) return;
      const bySha = this.records.get(nodeId);
      if (!bySha) return;
      for (const [sha, r] of bySha) if (r.inFlight === 0) bySha.delete(sha);
      if (bySha.size === 0) this.records.delete(nodeId);
      // A download still running keeps its record until it ends; look again then.
      else this.scheduleExpiry(nodeId);
    }, this.retainMs);
    timer.unref?.();
    this.expiry.set(nodeId, timer);
  }
}
