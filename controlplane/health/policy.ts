// When runtime failures of a filter call for an automatic response, and which one. Pure logic:
// no clock, no I/O (monitor.ts feeds it and applies what it decides).

export interface HealthPolicyOptions {
  /** Failures within `windowMs` that trigger a response; 0 turns the policy off. */
  threshold: number;
  windowMs: number;
}

/** What the control plane knows about the filter when the threshold is reached. */
export interface FilterFacts {
  enabled: boolean;
  /** Module Envoy is told to run (the pinned one while pinned). */
  servingSha256?: string;
  /** The filter's newest good module and when it was built (and pushed: they follow at once). */
  newestSha256?: string;
  newestBuiltAtMs?: number;
  pinnedSha256?: string;
  /** Retained good modules, oldest first (the newest last). */
  history: readonly { sha256: string }[];
}

export type HealthDecision =
  | { action: "rolled_back"; sha256: string; reason: string }
  | { action: "disabled"; reason: string };

/**
 * Failures counted per filter within a sliding window. `add` returns true when the count within
 * the window reaches the threshold (the caller then decides and calls `reset`).
 */
export class FailureWindow {
  private readonly samples = new Map<string, { at: number; count: number }[]>();

  constructor(private readonly opts: HealthPolicyOptions) {}

  get enabled(): boolean {
    return this.opts.threshold > 0;
  }

  add(filter: string, count: number, at: number): boolean {
    if (count <= 0) return false;
    const list = this.prune(filter, at);
    list.push({ at, count });
    this.samples.set(filter, list);
    return this.enabled && this.count(filter, at) >= this.opts.threshold;
  }

  /** Failures of `filter` within the window ending at `now`. */
  count(filter: string, now: number): number {
    return this.prune(filter, now).reduce((sum, s) => sum + s.count, 0);
  }

  /** When the oldest failure still in the window was seen. */
  firstAt(filter: string, now: number): number | undefined {
    return this.prune(filter, now)[0]?.at;
  }

  reset(filter: string): void {
    this.samples.delete(filter);
  }

  private prune(filter: string, now: number): { at: number; count: number }[] {
    const list = (this.samples.get(filter) ?? []).filter((s) => now - s.at < this.opts.windowMs);
    if (list.length === 0) this.samples.delete(filter);
    else this.samples.set(filter, list);
    return list;
  }
}

/**
 * Rolls back when the failures began after the newest module went out, Envoy runs that newest
 * module (no pin), and an older good module is retained: the change broke it, the previous
 * module is the known-good state. Otherwise (no older module, already pinned, failures older
 * than the module) disables the filter. Returns undefined when there is nothing to do (already
 * disabled by someone else).
 */
export function decide(filter: string, facts: FilterFacts, failures: number, firstFailureAtMs: number, windowMs: number): HealthDecision | undefined {
  if (!facts.enabled) return undefined;
  const seen = `${failures} runtime failure(s) within ${Math.round(windowMs / 1000)} s`;
  const servingNewest = facts.pinnedSha256 === undefined && facts.servingSha256 !== undefined && facts.servingSha256 === facts.newestSha256;
  const beganAfterPush = facts.newestBuiltAtMs !== undefined && firstFailureAtMs >= facts.newestBuiltAtMs;
  const newestIndex = facts.history.findIndex((m) => m.sha256 === facts.newestSha256);
  const previous = newestIndex > 0 ? facts.history[newestIndex - 1] : undefined;
  if (servingNewest && beganAfterPush && previous) {
    return { action: "rolled_back", sha256: previous.sha256, reason: `${seen} after module ${short(facts.newestSha256)} went out: pinned the previous module ${short(previous.sha256)} of ${filter}` };
  }
  const why = facts.pinnedSha256 !== undefined ? `the pinned module ${short(facts.pinnedSha256)} fails too`
    : !previous ? "no older good module to roll back to"
    : "the failures began before the newest module went out";
  return { action: "disabled", reason: `${seen}; ${why}: disabled ${filter}` };
}

function short(sha: string | undefined): string {
  return sha ? sha.slice(0, 12) : "(none)";
}
