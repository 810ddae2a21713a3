/**
 * Where one reload action's time went, from what the run recorded: the control plane's API as
 * polled (CpWatch), and the responses of the load and of the fresh-connection probe. Times are
 * ms after the load started; a missing one was not seen before the run ended.
 */
import type { CpWatch } from "./cp-watch.ts";
import type { Action } from "./reload-actions.ts";
import type { SampleLog } from "./samples.ts";

/** Times in ms after the load started. */
export interface ActionTimeline {
  what: string;
  label: string;
  at: number;
  builtAt?: number;
  buildMs?: number;
  /** sha256 prefix of the module built for this action. */
  module?: string;
  sentAt?: number;
  ackedAt?: number;
  nacks: number;
  firstNewAt?: number;
  /** First response on a fresh connection (the probe) that shows the change. */
  firstNewFreshAt?: number;
  /** Last response in this action's interval that still showed the old state. */
  lastOldAt?: number;
  actionToBuilt?: number;
  builtToSent?: number;
  sentToAcked?: number;
  ackedToFirstNew?: number;
  actionToFirstNew?: number;
  actionToFirstNewFresh?: number;
}

/** An action as the driver took it. */
export interface Taken {
  action: Action;
  xdsType: string;
  at: number;
  shaBefore: string | null | undefined;
  sentBefore: string | undefined;
}

/** Completion time of the first 2xx response started after `t.at` that shows the change. */
function firstNew(t: Taken, log: SampleLog): number | undefined {
  let first = Infinity;
  for (let i = 0; i < log.count; i++) {
    const start = log.start[i]!;
    const status = log.status[i]!;
    if (start < t.at || status < 200 || status > 299) continue;
    if (t.action.isNew(log.markerAt(i))) first = Math.min(first, start + log.latency[i]!);
  }
  return Number.isFinite(first) ? first : undefined;
}

/** Completion time of the last 2xx response started in [t.at, until) that still shows the old state. */
function lastOld(t: Taken, until: number, log: SampleLog): number | undefined {
  let last = -Infinity;
  for (let i = 0; i < log.count; i++) {
    const start = log.start[i]!;
    const status = log.status[i]!;
    if (start < t.at || start >= until || status < 200 || status > 299) continue;
    if (!t.action.isNew(log.markerAt(i))) last = Math.max(last, start + log.latency[i]!);
  }
  return Number.isFinite(last) ? last : undefined;
}

export function timeline(t: Taken, until: number, origin: number, watch: CpWatch, log: SampleLog, probe: SampleLog): ActionTimeline {
  const out: ActionTimeline = { what: t.action.what, label: t.action.label, at: t.at - origin, nacks: 0 };
  const rel = (x: number | undefined): number | undefined => (x === undefined ? undefined : x - origin);
  let builtAbs: number | undefined;
  if (t.action.buildOf) {
    // The first build of this filter that started after the action (builtAt - buildMs): when
    // saves come faster than builds, a build still running from the previous save finishes
    // after this action and must not be taken for its own. Matched on builtAt, not on the
    // status a poll saw: the next build may already be running when the poll looks.
    const e = watch.filterEvents.find((f) => f.name === t.action.buildOf && f.sha256 !== null && (t.action.sameModule || f.sha256 !== t.shaBefore)
      && f.builtAt !== undefined && Date.parse(f.builtAt) - (f.buildMs ?? 0) >= t.at - 5);
    if (e) {
      builtAbs = Date.parse(e.builtAt!);
      out.module = `${e.sha256!.slice(0, 12)}${e.sha256 === t.shaBefore ? " (unchanged)" : ""}`;
      out.builtAt = rel(builtAbs);
      if (e.buildMs !== undefined) out.buildMs = e.buildMs;
    }
  }
  // The push after this action's build (a push that follows a build may come after the next
  // action). A rebuild (same module) should push nothing, so only its own interval is searched.
  const from = Math.max(t.at, builtAbs ?? -Infinity);
  const sent = watch.typeEvents.find((e) => e.type === t.xdsType && e.kind === "sent" && e.at >= from && e.version !== t.sentBefore && (!t.action.sameModule || e.at < until));
  const acked = sent && watch.typeEvents.find((e) => e.type === t.xdsType && e.kind === "acked" && e.at >= sent.at && e.version === sent.version);
  out.nacks = watch.typeEvents.filter((e) => e.kind === "nack" && e.at >= t.at && e.at < until).length;
  out.sentAt = rel(sent?.at);
  out.ackedAt = rel(acked?.at);
  out.firstNewAt = rel(firstNew(t, log));
  out.firstNewFreshAt = rel(firstNew(t, probe));
  out.lastOldAt = rel(lastOld(t, until, log));
  const diff = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : b - a);
  out.actionToBuilt = diff(out.at, out.builtAt);
  out.builtToSent = diff(out.builtAt, out.sentAt);
  out.sentToAcked = diff(out.sentAt, out.ackedAt);
  out.ackedToFirstNew = diff(out.ackedAt, out.firstNewAt);
  out.actionToFirstNew = diff(out.at, out.firstNewAt);
  out.actionToFirstNewFresh = diff(out.at, out.firstNewFreshAt);
  return out;
}
