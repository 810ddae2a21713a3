/** Everything an operator may want to follow live, from a save to the last Envoy's ACK. */
export type ControlPlaneEventBody =
  | { type: "build.started"; filter: string }
  | { type: "build.succeeded"; filter: string; sha256: string; buildMs: number; bytes: number }
  | { type: "build.failed"; filter: string; error: string; buildMs: number }
  | { type: "filter.removed"; filter: string }
  | { type: "state.changed"; filter: string; change: Record<string, unknown> }
  | { type: "snapshot.published"; changed: string[] }
  | { type: "xds.pushed"; node: string; stream: number; typeUrl: string; version: string; nonce: string; resources: string[] }
  | { type: "xds.acked"; node: string; stream: number; typeUrl: string; version: string }
  | { type: "xds.nacked"; node: string; stream: number; typeUrl: string; version: string; message: string }
  | { type: "xds.cache_miss_resend"; node: string; stream: number; shas: string[] }
  | { type: "client.connected"; node: string; cluster: string; stream: number; peer: string }
  | { type: "client.disconnected"; node: string; cluster: string; stream: number }
  /** A module download the module server finished sending (GET only; HEAD and aborted ones are not). */
  | { type: "module.served"; sha256: string; node: string; bytes: number }
  /** An Envoy's stats show crashes of the filter's VM (controlplane/health). */
  | { type: "health.failures"; filter: string; node: string; count: number; total: number }
  /** The control plane rolled the filter back or disabled it after repeated runtime failures. */
  | { type: "health.action"; filter: string; action: "rolled_back" | "disabled"; reason: string; failures: number; sha256?: string }
  /**
   * An Envoy has a worker thread stuck (e.g. a Wasm callback that never returns): its stats
   * stopped flushing while its stream stayed open (Envoy merges stats across workers first), or,
   * once it flushes again, its watchdog counted mega misses for that worker.
   */
  | { type: "health.stuck"; node: string; signal: "stats_stalled" | "watchdog"; worker?: string; megaMisses?: number; silentMs?: number; filters: string[] };

export type ControlPlaneEvent = ControlPlaneEventBody & { seq: number; at: string };
export type EventListener = (event: ControlPlaneEvent) => void;

/** How many past events a new subscriber can replay (e.g. an SSE client's Last-Event-ID). */
const RECENT_EVENTS = 500;

/**
 * In-process event stream. Producers (build, state, xDS sessions) emit; consumers (SSE route,
 * metrics, logs) subscribe. Emitting never throws into the producer.
 */
export class EventBus {
  private seq = 0;
  private readonly recentEvents: ControlPlaneEvent[] = [];
  private readonly listeners = new Set<EventListener>();

  emit(body: ControlPlaneEventBody): void {
    const event = { ...body, seq: ++this.seq, at: new Date().toISOString() } as ControlPlaneEvent;
    this.recentEvents.push(event);
    if (this.recentEvents.length > RECENT_EVENTS) this.recentEvents.shift();
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A failing consumer must not break a build or an xDS stream.
      }
    }
  }

  /** Events after `seq` still held (all held ones by default). */
  since(seq = 0): ControlPlaneEvent[] {
    return this.recentEvents.filter((e) => e.seq > seq);
  }

  /** How many listeners are subscribed (an SSE client that went away must not stay one). */
  get subscriberCount(): number {
    return this.listeners.size;
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
