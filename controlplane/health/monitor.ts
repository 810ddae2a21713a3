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

/** An Envoy whose stats reach the control plane (its metrics_service sink stream is open). */
export interface StatsReporter {
  node: string;
  cluster: string;
  peer: string;
  since: string;
}

/** What the admin API reads. */
export interface HealthReader {
  health(filter: string): FilterHealth;
  statsReporters(): StatsReporter[];
  readonly policy: { threshold: number; windowMs: number };
}

export class HealthMonitor implements HealthReader {
  private readonly records = new Map<string, FilterHealth & { actedAtMs?: number }>();
  private readonly window: FailureWindow;
  /** Filters with an action being applied (state write in flight). */
  private readonly acting = new Set<string>();
  /** Open stats streams by node id + cluster, with how many (a reconnect may overlap). */
  private readonly reporters = new Map<string, StatsReporter & { streams: number }>();

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
    return [...this.reporters.values()].map(({ streams: _streams, ...r }) => r).sort((a, b) => a.node.localeCompare(b.node));
  }

  opened(node: { id: string; cluster: string }, peer: string): void {
    const key = `${node.id}\n${node.cluster}`;
    const r = this.reporters.get(key);
    if (r) r.streams++;
    else this.reporters.set(key, { node: node.id, cluster: node.cluster, peer, since: new Date().toISOString(), streams: 1 });
  }

  closed(node: { id: string; cluster: string }): void {
    const key = `${node.id}\n${node.cluster}`;
    const r = this.reporters.get(key);
    if (r && --r.streams <= 0) this.reporters.delete(key);
  }

  /** One Envoy's failure counters rose. Returns once any resulting action is persisted. */
  async report(r: RuntimeFailureReport): Promise<void> {
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
