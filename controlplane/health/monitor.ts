// Runtime health of each filter: counts the failures Envoys report (metrics-service.ts), keeps
// a record per filter for the API, and when the policy (policy.ts) says so rolls the filter back
// or disables it -- through operator state, exactly like the admin API's rollback and disable, so
// the choice persists, shows in the API and is undone by the operator's normal unpin or enable.
// It never touches an xDS stream: state -> snapshot -> xDS carries the change.
import type { EventBus } from "../events/bus.ts";
import { effectiveFilters } from "../registry/effective.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { FilterChoice, OperatorState } from "../state/operator-state.ts";
import type { RuntimeFailureReport } from "./metrics-service.ts";
import { decide, FailureWindow, type FilterFacts, type HealthDecision, type HealthPolicyOptions } from "./policy.ts";

export type HealthAction = HealthDecision["action"];

/** A filter's runtime health as the API shows it. */
export interface FilterHealth {
  /** Requests that met a failed VM of this filter, summed over Envoys, since start-up. */
  runtimeFailures: number;
  lastFailureAt: string | null;
  /** The last automatic response (it stays on record after the operator undoes it). */
  action: HealthAction | null;
  reason: string | null;
  actedAt: string | null;
}

export interface HealthMonitorOptions extends HealthPolicyOptions {
  /**
   * After an action, failures reported within this long are not counted: a flush can still hold
   * requests that met the old VM before Envoy applied the change.
   */
  settleMs?: number;
}

export interface HealthLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const DEFAULT_SETTLE_MS = 3000;
/** A stats stream is stalled after this many missed flushes, and at least this long. */
const STALL_FLUSHES = 4;
const STALL_MIN_MS = 4000;
/** Envoy's default stats_flush_interval, assumed until two flushes show the real one. */
const ENVOY_DEFAULT_FLUSH_MS = 5000;

/** An Envoy whose stats reach the control plane (its metrics_service sink stream is open). */
export interface StatsReporter {
  node: string;
  cluster: string;
  peer: string;
  since: string;
  /** When its last flush arrived. */
  lastStatsAt: string;
  /** Worker threads its watchdog reported stuck (mega misses), newest report last. */
  stuckWorkers: { worker: string; megaMisses: number; lastAt: string }[];
  /**
   * Set while the stream is open but flushes stopped coming: Envoy flushes only after merging
   * stats from every worker, so a stuck worker silences it (measured with a spinning filter).
   */
  statsStalledSince: string | null;
}

/**
 * Stats messages dropped because their stream was not bound to its node's xDS connection
 * (metrics-service.ts): a client other than that Envoy reporting as it, or an Envoy whose stat
 * sink does not share the ADS connection (another cluster than xds_cluster).
 */
export interface DroppedStats {
  reports: number;
  last: { node: string; cluster: string; peer: string; at: string } | null;
}

/** What the admin API reads. */
export interface HealthReader {
  health(filter: string): FilterHealth;
  statsReporters(): StatsReporter[];
  droppedStats(): DroppedStats;
  readonly policy: { threshold: number; windowMs: number };
}

export class HealthMonitor implements HealthReader {
  private readonly records = new Map<string, FilterHealth & { actedAtMs?: number }>();
  private readonly window: FailureWindow;
  /** Filters with an action being applied (state write in flight). */
  private readonly acting = new Set<string>();
  /** Open stats streams by node id + cluster, with how many (a reconnect may overlap). */
  private readonly reporters = new Map<string, StatsReporter & { streams: number; lastStatsAtMs?: number; intervalMs?: number }>();
  private readonly droppedRecord: DroppedStats = { reports: 0, last: null };

  constructor(
    private readonly deps: { registry: FilterRegistry; state: OperatorState; events: EventBus; log: HealthLog },
    private readonly opts: HealthMonitorOptions,
  ) {
    this.window = new FailureWindow(opts);
  }

  get policy(): { threshold: number; windowMs: number } {
    return { threshold: this.opts.threshold, windowMs: this.opts.windowMs };
  }

  /** The record of `filter` (zeros when nothing was ever reported). */
  health(filter: string): FilterHealth {
    const r = this.records.get(filter);
    return { runtimeFailures: r?.runtimeFailures ?? 0, lastFailureAt: r?.lastFailureAt ?? null, action: r?.action ?? null, reason: r?.reason ?? null, actedAt: r?.actedAt ?? null };
  }

  /** Envoys whose stats reach the control plane now. */
  statsReporters(): StatsReporter[] {
    return [...this.reporters.values()]
      .map(({ streams: _streams, lastStatsAtMs: _at, intervalMs: _interval, ...r }) => r)
      .sort((a, b) => a.node.localeCompare(b.node));
  }

  droppedStats(): DroppedStats {
    return { reports: this.droppedRecord.reports, last: this.droppedRecord.last && { ...this.droppedRecord.last } };
  }

  /** A stats message from a stream not bound to its node's xDS connection: counted, never acted on. */
  dropped(node: { id: string; cluster: string }, peer: string, at: number): void {
    this.droppedRecord.reports++;
    this.droppedRecord.last = { node: node.id, cluster: node.cluster, peer, at: new Date(at).toISOString() };
  }

  opened(node: { id: string; cluster: string }, peer: string): void {
    const key = reporterKey(node);
    const r = this.reporters.get(key);
    if (r) r.streams++;
    else {
      const now = new Date().toISOString();
      this.reporters.set(key, { node: node.id, cluster: node.cluster, peer, since: now, lastStatsAt: now, stuckWorkers: [], statsStalledSince: null, streams: 1 });
    }
  }

  heard(node: { id: string; cluster: string }, at: number): void {
    const r = this.reporters.get(reporterKey(node));
    if (!r) return;
    // The gap after a stall is the stall, not the flush interval.
    if (r.lastStatsAtMs !== undefined && r.statsStalledSince === null) r.intervalMs = at - r.lastStatsAtMs;
    r.lastStatsAtMs = at;
    r.lastStatsAt = new Date(at).toISOString();
    r.statsStalledSince = null;
  }

  /**
   * Flags Envoys whose stats stopped while their stream stayed open, once per episode: silent
   * for STALL_FLUSHES flush intervals (and at least STALL_MIN_MS). Called every second.
   */
  checkStalls(now: number = Date.now()): void {
    for (const r of this.reporters.values()) {
      if (r.statsStalledSince !== null || r.lastStatsAtMs === undefined) continue;
      const silentMs = now - r.lastStatsAtMs;
      if (silentMs < Math.max(STALL_MIN_MS, STALL_FLUSHES * (r.intervalMs ?? ENVOY_DEFAULT_FLUSH_MS))) continue;
      r.statsStalledSince = r.lastStatsAt;
      const filters = this.runningFilters();
      this.deps.events.emit({ type: "health.stuck", node: r.node, signal: "stats_stalled", silentMs, filters });
      this.deps.log.error({ node: r.node, silentMs, filters }, "Envoy stopped flushing stats while connected: a worker thread is likely stuck in a filter callback that never returns; Envoy cannot interrupt it, restart that Envoy");
    }
  }

  closed(node: { id: string; cluster: string }): void {
    const key = reporterKey(node);
    const r = this.reporters.get(key);
    if (r && --r.streams <= 0) this.reporters.delete(key);
  }

  /** One Envoy's failure counters rose. Returns once any resulting action is persisted. */
  async report(r: RuntimeFailureReport): Promise<void> {
    for (const [worker, count] of r.stuckWorkers ?? []) this.stuck(r.node, worker, count, r.at);
    const pending: Promise<void>[] = [];
    for (const [filter, count] of r.failures) {
      if (!this.deps.registry.get(filter)) continue; // not ours (another plugin in that Envoy)
      const record = this.records.get(filter) ?? { runtimeFailures: 0, lastFailureAt: null, action: null, reason: null, actedAt: null };
      record.runtimeFailures += count;
      record.lastFailureAt = new Date(r.at).toISOString();
      this.records.set(filter, record);
      this.deps.events.emit({ type: "health.failures", filter, node: r.node.id, count, total: record.runtimeFailures });
      const settling = record.actedAtMs !== undefined && r.at - record.actedAtMs < (this.opts.settleMs ?? DEFAULT_SETTLE_MS);
      if (settling || this.acting.has(filter)) continue;
      if (this.window.add(filter, count, r.at)) pending.push(this.respond(filter, r.at));
    }
    await Promise.all(pending);
  }

  /**
   * A worker thread of that Envoy stopped returning to its event loop. Envoy cannot interrupt a
   * Wasm callback, and a route change never reaches the stuck worker (measured), so nothing the
   * control plane pushes helps: it alerts, naming the filters that Envoy runs, and only a
   * restart of that Envoy recovers (or its worker watchdog's kill_timeout, if configured).
   */
  private runningFilters(): string[] {
    return effectiveFilters(this.deps.registry, this.deps.state).filter((f) => f.enabled && f.sha256).map((f) => f.name);
  }

  private stuck(node: { id: string; cluster: string }, worker: string, count: number, at: number): void {
    const filters = this.runningFilters();
    const reporter = this.reporters.get(reporterKey(node));
    if (reporter) {
      const entry = reporter.stuckWorkers.find((w) => w.worker === worker);
      const lastAt = new Date(at).toISOString();
      if (entry) {
        entry.megaMisses += count;
        entry.lastAt = lastAt;
      } else {
        reporter.stuckWorkers.push({ worker, megaMisses: count, lastAt });
      }
    }
    this.deps.events.emit({ type: "health.stuck", node: node.id, signal: "watchdog", worker, megaMisses: count, filters });
    this.deps.log.error({ node: node.id, worker, megaMisses: count, filters }, "Envoy worker stuck (watchdog mega miss): a filter may never return from a callback; Envoy cannot interrupt it, restart that Envoy");
  }

  private facts(filter: string): FilterFacts {
    const effective = effectiveFilters(this.deps.registry, this.deps.state).find((f) => f.name === filter);
    const newest = this.deps.registry.get(filter)?.module;
    const facts: FilterFacts = { enabled: effective?.enabled ?? false, history: this.deps.registry.historyOf(filter) };
    if (effective?.sha256) facts.servingSha256 = effective.sha256;
    if (effective?.pinnedSha256) facts.pinnedSha256 = effective.pinnedSha256;
    if (newest) {
      facts.newestSha256 = newest.sha256;
      facts.newestBuiltAtMs = Date.parse(newest.builtAt);
    }
    return facts;
  }

  private async respond(filter: string, at: number): Promise<void> {
    const failures = this.window.count(filter, at);
    const first = this.window.firstAt(filter, at) ?? at;
    this.window.reset(filter);
    const decision = decide(filter, this.facts(filter), failures, first, this.opts.windowMs);
    if (!decision) return;
    this.acting.add(filter);
    try {
      // The same state changes as POST /rollback and POST /disable (routes/filters.ts).
      const change: FilterChoice = decision.action === "rolled_back" ? { pinnedSha256: decision.sha256 } : { enabled: false };
      await this.deps.state.update(filter, change);
      const record = this.records.get(filter)!;
      record.action = decision.action;
      record.reason = decision.reason;
      record.actedAtMs = Date.now();
      record.actedAt = new Date(record.actedAtMs).toISOString();
      this.deps.events.emit({ type: "state.changed", filter, change: { ...change } });
      this.deps.events.emit({ type: "health.action", filter, action: decision.action, reason: decision.reason, failures, ...(decision.action === "rolled_back" ? { sha256: decision.sha256 } : {}) });
      this.deps.log.warn({ filter, action: decision.action, failures, reason: decision.reason }, "filter failing at runtime: automatic response");
    } catch (err) {
      this.deps.log.error({ err, filter, action: decision.action }, "cannot apply automatic response to runtime failures");
    } finally {
      this.acting.delete(filter);
    }
  }
}

/** Streams are tracked per Envoy: node id and cluster. */
function reporterKey(node: { id: string; cluster: string }): string {
  return `${node.id}\n${node.cluster}`;
}
