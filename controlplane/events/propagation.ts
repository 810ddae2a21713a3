// Latency measurements derived from the event stream alone (the xDS code only emits events):
//
// - push-to-ACK: on one stream, from the first push of a version of a type to the ACK of that
//   version. A re-send of the same version (after an ECDS code-cache miss) does not restart the
//   clock, so for ECDS this includes Envoy's module download.
// - propagation: from the `build.started` of the build that produced a filter's new module to the
//   ECDS ACK, on each Envoy's ECDS stream, of a config naming that module's sha256. Streams
//   counted are the ECDS streams open when the build succeeded whose ACKed config did not already
//   name that sha256 (an Envoy that connects later measures its connection, not the change; an
//   unchanged module propagates nothing). `first` is the earliest such ACK per change.

/** What the tracker asks about the xDS state (read from ClientRegistry and the snapshot cache). */
export interface PropagationSources {
  /** Streams subscribed to ECDS right now, each with what its last ECDS ACK holds. */
  ecdsStreams(): Iterable<{ stream: number; ackedModule(filter: string): string | undefined }>;
  /** The module sha256 that stream's last ACKed ECDS config of `filter` names, if any. */
  ackedModule(stream: number, filter: string): string | undefined;
}

export interface PropagationObserver {
  /** Build start to one stream's ACK. */
  each(seconds: number, filter: string): void;
  /** Build start to the first stream's ACK. */
  first(seconds: number, filter: string): void;
}

interface PendingChange {
  sha256: string;
  startedAt: number;
  awaiting: Set<number>;
  firstSeen: boolean;
}

/** Forget a change no stream ACKed within this long (e.g. a filter targeted at no open stream). */
const MAX_PENDING_MS = 10 * 60_000;

export class PropagationTracker {
  private readonly startedAt = new Map<string, number>();
  private readonly pending = new Map<string, PendingChange>();

  constructor(
    private readonly sources: PropagationSources,
    private readonly observe: PropagationObserver,
    private readonly maxPendingMs = MAX_PENDING_MS,
  ) {}

  buildStarted(filter: string, at: number): void {
    this.startedAt.set(filter, at);
  }

  buildFailed(filter: string): void {
    this.startedAt.delete(filter);
  }

  buildSucceeded(filter: string, sha256: string, at: number): void {
    const startedAt = this.startedAt.get(filter) ?? at;
    this.startedAt.delete(filter);
    this.expire(at);
    const awaiting = new Set<number>();
    for (const { stream, ackedModule } of this.sources.ecdsStreams()) {
      if (ackedModule(filter) !== sha256) awaiting.add(stream);
    }
    // A newer build supersedes an older change still propagating: Envoys skip to the newer one.
    if (awaiting.size === 0) this.pending.delete(filter);
    else this.pending.set(filter, { sha256, startedAt, awaiting, firstSeen: false });
  }

  filterRemoved(filter: string): void {
    this.startedAt.delete(filter);
    this.pending.delete(filter);
  }

  streamClosed(stream: number): void {
    for (const [filter, change] of this.pending) {
      change.awaiting.delete(stream);
      if (change.awaiting.size === 0) this.pending.delete(filter);
    }
  }

  /**
   * A stream ACKed ECDS at `at`. Call once the ACK is recorded (what the stream holds must already
   * reflect it: the xDS sessions update it right after emitting the event, so a microtask later).
   */
  ecdsAcked(stream: number, at: number): void {
    this.expire(at);
    for (const [filter, change] of this.pending) {
      if (!change.awaiting.has(stream)) continue;
      if (this.sources.ackedModule(stream, filter) !== change.sha256) continue;
      const seconds = Math.max(0, at - change.startedAt) / 1000;
      change.awaiting.delete(stream);
      this.observe.each(seconds, filter);
      if (!change.firstSeen) {
        change.firstSeen = true;
        this.observe.first(seconds, filter);
      }
      if (change.awaiting.size === 0) this.pending.delete(filter);
    }
  }

  /** Changes still waiting for some stream (for tests and debugging). */
  pendingFilters(): string[] {
    return [...this.pending.keys()];
  }

  private expire(now: number): void {
    for (const [filter, change] of this.pending) if (now - change.startedAt > this.maxPendingMs) this.pending.delete(filter);
  }
}

/** Cap on versions pushed but not yet answered, across streams (a stream may never answer). */
const MAX_OUTSTANDING_PUSHES = 10_000;

/** Push-to-ACK per stream, type and version (see the top of this file). */
export class AckLatencyTracker {
  private readonly outstanding = new Map<string, number>();

  constructor(private readonly observe: (seconds: number, typeUrl: string) => void) {}

  pushed(stream: number, typeUrl: string, version: string, at: number): void {
    const key = `${stream}\n${typeUrl}\n${version}`;
    if (this.outstanding.has(key)) return; // a re-send of the same version: keep the first push time
    this.outstanding.set(key, at);
    if (this.outstanding.size > MAX_OUTSTANDING_PUSHES) this.outstanding.delete(this.outstanding.keys().next().value!);
  }

  acked(stream: number, typeUrl: string, version: string, at: number): void {
    const key = `${stream}\n${typeUrl}\n${version}`;
    const pushedAt = this.outstanding.get(key);
    if (pushedAt === undefined) return;
    this.outstanding.delete(key);
    this.observe(Math.max(0, at - pushedAt) / 1000, typeUrl);
  }

  /** The version was rejected: it will not be ACKed on this stream. */
  nacked(stream: number, typeUrl: string, version: string): void {
    this.outstanding.delete(`${stream}\n${typeUrl}\n${version}`);
  }

  streamClosed(stream: number): void {
    for (const key of this.outstanding.keys()) if (key.startsWith(`${stream}\n`)) this.outstanding.delete(key);
  }
}
