import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { AnyMessage } from "./codec.ts";
import type { DeliveryVariant } from "./resources.ts";
import type { EncodedResource } from "./snapshot.ts";

/** How long a NACK may wait for the module fetch it implies before it counts as a real rejection. */
export const CACHE_MISS_GRACE_MS = 3000;
/**
 * The module server sees a download finish when the last byte is handed to the kernel; Envoy
 * stores it in its code cache a moment later. A re-send that lands in between finds the fetch
 * "in progress" (another NACK, and a crash path in Envoy), so the re-send waits this long.
 */
export const RESEND_AFTER_FETCH_MS = 100;

/**
 * The variant plus what the session knows of the Envoy's listeners. An ECDS-only Envoy's listeners
 * are its own (docs/ecds-only.md): one may already be warm when a filter first arrives (the control
 * plane was unreachable past initial_fetch_timeout), and a warm listener never fetches new code.
 * Measured on 1.40: such an Envoy ACKed the filter and then ran without it. The cache-miss path on
 * the first delivery is no cure: a NACK ends the warming of a listener that IS warming, which then
 * answers 500 until the re-send. So the first delivery stays as for any Envoy, and an ACK of it that
 * no module download follows (WARM_FETCH_CHECK_MS) is delivered again through the cache-miss path.
 */
export type EcdsVariant = DeliveryVariant & { listenersMayBeWarm?: boolean };

/** How long after the ACK of a first delivery a download must have started (see EcdsVariant). */
export const WARM_FETCH_CHECK_MS = 1000;

/** What went out in one ECDS response, to judge its NACK. */
export interface EcdsSent {
  names: string[];
  sentAt: number;
  /** sha256 of modules sent with nack_on_code_cache_miss (updates of warm filters). */
  updateShas: string[];
  /** A re-send after Envoy fetched the modules: a NACK of it is a real rejection. */
  afterFetch: boolean;
}

export interface EcdsCallbacks {
  /**
   * Send these ECDS resources again; `fetched` modules are now in Envoy's cache (empty: a first
   * delivery that found the listener warm goes again, through the cache-miss path; EcdsVariant).
   */
  resend(names: string[], fetched: ReadonlySet<string>): void;
  /** The NACK stands: no download explains it. */
  reject(message: string): void;
  /** Pushes held back while a download ran may go now. */
  flushDeferred(): void;
}

interface Pending {
  sent: EcdsSent;
  envoyMessage: string;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Per-stream delivery of Wasm filter configs (ECDS), shared by the SotW and Delta sessions.
 *
 * Envoy 1.40 fetches remote Wasm code only while a listener warms; an update to a warm filter
 * with an uncached sha256 is accepted, never fetched, and the filter silently stops running
 * (measured). So a filter this Envoy is warming gets `nack_on_code_cache_miss: false` and an
 * update gets `true`: Envoy NACKs, keeps the old module serving and downloads the new one in
 * the background. The module server reports that node's download (the node id is in the
 * module URL); then the config is re-sent, still with the flag, and with `&fetched=1` on the URL
 * (Envoy ignores a config identical to one it rejected, so the re-send must differ). Envoy applies
 * it from its cache; if the fetch failed (bytes whose sha256 does not match), it NACKs again and
 * keeps the old module: that NACK is recorded as a real rejection. (Re-sending without the flag,
 * as before, made Envoy ACK a filter without code and drop the old module: isolation report.)
 */
export class EcdsDelivery {
  /** Filter names this Envoy already runs: an update to one needs the cache-miss path. */
  private readonly warm = new Set<string>();
  /** Per name, the module and variant last sent, so an unchanged filter keeps identical bytes. */
  private readonly sentVariants = new Map<string, { sha256: string | undefined; nack: boolean; afterFetch: boolean }>();
  private pending: Pending | undefined;
  private deferred = false;
  /** First deliveries to an Envoy whose listeners may be warm, until a download of them shows (EcdsVariant). */
  private unproven: Map<string, { sha256: string; sentAt: number }> | undefined; // made on first use: memory per idle stream
  private unprovenTimer: ReturnType<typeof setTimeout> | undefined;
  private stopWatching: (() => void) | undefined;
  resends = 0;

  constructor(
    private readonly variant: (nackOnCacheMiss: boolean, afterFetch?: boolean) => EcdsVariant,
    private readonly fetches: FetchTracker,
    private readonly callbacks: EcdsCallbacks,
    private readonly graceMs = CACHE_MISS_GRACE_MS,
  ) {}

  markWarm(names: Iterable<string>): void {
    let check = false;
    for (const n of names) {
      this.warm.add(n);
      if (this.unproven?.has(n)) check = true;
    }
    if (check && !this.unprovenTimer) {
      this.unprovenTimer = setTimeout(() => this.checkUnproven(), WARM_FETCH_CHECK_MS);
      this.unprovenTimer.unref?.();
    }
  }

  /** A filter dropped from the subscription is no longer warm; if it comes back it warms again. */
  forget(name: string): void {
    this.warm.delete(name);
    this.sentVariants.delete(name);
    this.unproven?.delete(name);
  }

  get awaitingFetch(): boolean {
    return this.pending !== undefined;
  }

  /** Renders resources for this Envoy and returns what a NACK of them will be judged by. */
  render(resources: readonly EncodedResource[], fetched?: ReadonlySet<string>): { anys: AnyMessage[]; sent: EcdsSent } {
    this.watchFetches();
    const updateShas = new Set<string>();
    const mayBeWarm = this.variant(false).listenersMayBeWarm === true;
    const anys = resources.map((r) => {
      const prior = this.sentVariants.get(r.name);
      let nack: boolean;
      let afterFetch = false;
      if (r.moduleSha256 && fetched?.has(r.moduleSha256)) {
        nack = true;
        afterFetch = true;
      } else if (prior && prior.sha256 === r.moduleSha256) {
        // Unchanged module: identical bytes, Envoy sees no change.
        nack = prior.nack;
        afterFetch = prior.afterFetch;
      } else {
        nack = this.warm.has(r.name);
        if (nack && r.moduleSha256) updateShas.add(r.moduleSha256);
        if (!nack && mayBeWarm && r.moduleSha256) (this.unproven ??= new Map()).set(r.name, { sha256: r.moduleSha256, sentAt: Date.now() });
      }
      this.sentVariants.set(r.name, { sha256: r.moduleSha256, nack, afterFetch });
      return r.anyFor(this.variant(nack, afterFetch));
    });
    const sent: EcdsSent = { names: resources.map((r) => r.name), sentAt: Date.now(), updateShas: [...updateShas], afterFetch: (fetched?.size ?? 0) > 0 };
    return { anys, sent };
  }

  /** True when a NACK of `sent` is (probably) a code-cache miss that a re-send will fix. */
  onNack(sent: EcdsSent, envoyMessage: string): boolean {
    if (sent.afterFetch || sent.updateShas.length === 0) return false;
    this.cancel();
    const timer = setTimeout(() => this.onGraceExpired(), this.graceMs);
    timer.unref?.();
    this.pending = { sent, envoyMessage, timer };
    // The download may already have finished before the NACK arrived.
    const settle = setTimeout(() => this.resendIfFetched(), RESEND_AFTER_FETCH_MS);
    settle.unref?.();
    return true;
  }

  /**
   * Announcing a sha256 Envoy is still downloading is a crash path in Envoy's Wasm code cache:
   * returns true (and remembers to flush later) when a push of `resources` must wait.
   */
  mustDefer(resources: readonly EncodedResource[]): boolean {
    const busy = resources.some((r) => r.moduleSha256 !== undefined && this.fetches.state(this.variant(false).nodeId, r.moduleSha256, 0) === "in-flight");
    if (busy) this.deferred = true;
    return busy;
  }

  cancel(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
  }

  close(): void {
    this.cancel();
    if (this.unprovenTimer) clearTimeout(this.unprovenTimer);
    this.stopWatching?.();
  }

  /**
   * An ACKed first delivery that no download followed: the listener was warm (or the module was
   * cached, when delivering again through the cache-miss path costs one ACK). See EcdsVariant.
   */
  private checkUnproven(): void {
    this.unprovenTimer = undefined;
    if (this.pending) {
      // A cache-miss exchange is running: look again once it is over.
      this.unprovenTimer = setTimeout(() => this.checkUnproven(), WARM_FETCH_CHECK_MS);
      this.unprovenTimer.unref?.();
      return;
    }
    const node = this.variant(false).nodeId;
    const missed: string[] = [];
    for (const [name, u] of this.unproven ?? []) {
      if (!this.warm.has(name)) continue; // not ACKed yet: its ACK checks again
      this.unproven!.delete(name);
      if (this.fetches.state(node, u.sha256, u.sentAt) !== "none") continue;
      missed.push(name);
      // Rendered again as an update of a warm filter: nack_on_code_cache_miss, Envoy downloads it.
      this.sentVariants.delete(name);
    }
    if (missed.length === 0) return;
    this.resends++;
    this.callbacks.resend(missed, new Set());
  }

  /** Subscribes to this Envoy's module downloads once its node id is known. */
  private watchFetches(): void {
    if (this.stopWatching) return;
    this.stopWatching = this.fetches.onCompleted(this.variant(false).nodeId, () => {
      const settle = setTimeout(() => this.afterFetchSettled(), RESEND_AFTER_FETCH_MS);
      settle.unref?.();
    });
  }

  private afterFetchSettled(): void {
    this.resendIfFetched();
    if (this.deferred && !this.pending) {
      this.deferred = false;
      this.callbacks.flushDeferred();
    }
  }

  private fetchStates(p: Pending): string[] {
    return p.sent.updateShas.map((sha) => this.fetches.state(this.variant(false).nodeId, sha, p.sent.sentAt));
  }

  private resendIfFetched(): void {
    const p = this.pending;
    if (!p || !this.fetchStates(p).every((s) => s === "done")) return;
    this.cancel();
    this.resends++;
    this.callbacks.resend(p.sent.names, new Set(p.sent.updateShas));
  }

  private onGraceExpired(): void {
    const p = this.pending;
    if (!p) return;
    if (this.fetchStates(p).includes("in-flight")) {
      // Still downloading: keep waiting; completion re-sends (Envoy's http_uri timeout bounds it).
      p.timer = setTimeout(() => this.onGraceExpired(), this.graceMs);
      p.timer.unref?.();
      return;
    }
    this.cancel();
    this.callbacks.reject(p.envoyMessage);
  }
}
