/**
 * The report of `npm run bench:reload`: per build placement (reload-variants.ts), what an edit,
 * its no-push control (a comment-only recompile) and a disable/enable cost the traffic, as p99
 * inside reload windows over p99 outside, per round then the median and the spread; save to first
 * new response; and, per variant, one edit window next to one toggle window on the same scale.
 */
import fs from "node:fs";
import path from "node:path";
import type { ReloadResult } from "./reload-run.ts";
import type { Variant } from "./reload-variants.ts";
import { fmt, median, spread } from "./stats.ts";
import { timeSeriesChart } from "./svg.ts";

export interface PlacementRun {
  variant: string;
  round: number;
  result: ReloadResult;
}

export interface PlacementMeta {
  startedAt: string;
  finishedAt: string;
  cores: number;
  cpuModel: string;
  envoyVersion: string;
  commit: string;
  loadavgSamples: number[];
  rounds: number;
  rate: number;
  modes: string[];
  skipped: string[];
}

export const TARGETS = { edit: 2, rebuild: 1.5, saveToLiveMs: 1000 };

const ratio = (r: ReloadResult): number => r.inside.p99 / r.outside.p99;
/** Every action's paired ratio (window vs the second before it), pooled over runs. */
const local = (rs: ReloadResult[]): number[] => rs.flatMap((r) => r.localRatios ?? []).filter(Number.isFinite);
/** Median and interquartile range of pooled per-action values. */
const iqr = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return s.length === 0 ? "-" : `${fmt(q(0.5))}x (${fmt(q(0.25))}-${fmt(q(0.75))}, n=${s.length})`;
};
const range = (xs: number[], unit = "x"): string => {
  const s = spread(xs);
  return `${fmt(s.median)}${unit} (${fmt(s.min)}-${fmt(s.max)})`;
};

/** Rows of the main table: one per variant and load mode. */
function rows(runs: PlacementRun[], variants: Variant[], modes: string[]): string[] {
  const out = [
    "| variant | load | edit p99 in/out | rebuild (no push) p99 in/out | toggle p99 in/out | p99 outside ms | save -> first new ms (p50, p90) | build ms p50 | edit paired | rebuild paired | toggle paired |",
    "| :-- | :-- | --: | --: | --: | --: | --: | --: | --: | --: | --: |",
  ];
  for (const v of variants) for (const mode of modes) {
    const of = (kind: string): ReloadResult[] => runs.filter((r) => r.variant === v.name && r.result.kind === kind && r.result.mode === mode).map((r) => r.result);
    const edits = of("edit");
    if (edits.length === 0) continue;
    const toLive = edits.flatMap((r) => r.actions.map((a) => a.actionToFirstNew)).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    const builds = [...edits, ...of("rebuild")].flatMap((r) => r.actions.map((a) => a.buildMs)).filter((x): x is number => x !== undefined);
    const p90 = toLive[Math.min(toLive.length - 1, Math.floor(0.9 * toLive.length))];
    out.push(`| ${v.name} | ${mode} | ${range(edits.map(ratio))} | ${range(of("rebuild").map(ratio))} | ${range(of("toggle").map(ratio))} | ` +
      `${range([...edits, ...of("rebuild"), ...of("toggle")].map((r) => r.outside.p99), "")} | ${fmt(median(toLive))}, ${fmt(p90 ?? NaN)} | ${fmt(median(builds))} | ` +
      `${iqr(local(edits))} | ${iqr(local(of("rebuild")))} | ${iqr(local(of("toggle")))} |`);
  }
  return out;
}

/** Verdict lines against the issue's targets, per variant (open loop: the honest tail measure). */
function verdicts(runs: PlacementRun[], variants: Variant[], mode: string): string[] {
  const out: string[] = [];
  for (const v of variants) {
    const of = (kind: string): ReloadResult[] => runs.filter((r) => r.variant === v.name && r.result.kind === kind && r.result.mode === mode).map((r) => r.result);
    const edit = median(of("edit").map(ratio));
    const rebuild = median(of("rebuild").map(ratio));
    const toLive = median(of("edit").flatMap((r) => r.actions.map((a) => a.actionToFirstNew ?? NaN)));
    const mark = (ok: boolean): string => (ok ? "met" : "MISSED");
    out.push(`${v.name.padEnd(12)} edit ${fmt(edit)}x ${mark(edit <= TARGETS.edit)}; rebuild ${fmt(rebuild)}x ${mark(rebuild <= TARGETS.rebuild)}; ` +
      `save->live ${fmt(toLive)} ms ${mark(toLive < TARGETS.saveToLiveMs)}  (paired: edit ${fmt(median(local(of("edit"))))}x, ` +
      `rebuild ${fmt(median(local(of("rebuild"))))}x, toggle ${fmt(median(local(of("toggle"))))}x)`);
  }
  return out;
}

/** The series around action `index` of a run: [at - 1 s, at + 3 s), times shifted to start at 0. */
function zoom(r: ReloadResult, index: number): Parameters<typeof timeSeriesChart>[0] {
  const a = r.actions[Math.min(index, r.actions.length - 1)]!;
  const from = a.at - 1000;
  const to = a.at + 3000;
  const shift = (t: number): number => t - from;
  const inSpan = (t: number | undefined): t is number => t !== undefined && t >= from && t < to;
  return {
    title: `${r.kind}: ${a.label} (${r.load}), 4 s around it`,
    points: r.series.filter((p) => p.t >= from && p.t < to).map((p) => ({ ...p, t: shift(p.t) })),
    bucketMs: 100,
    actions: r.actions.filter((x) => inSpan(x.at)).map((x) => ({ t: shift(x.at), label: x.label })),
    windows: r.windows.filter(([s, e]) => e > from && s < to).map(([s, e]) => [Math.max(0, shift(s)), Math.min(to - from, shift(e))] as [number, number]),
    firstNew: r.actions.map((x) => x.firstNewAt).filter(inSpan).map(shift),
    firstNewFresh: r.actions.map((x) => x.firstNewFreshAt).filter(inSpan).map(shift),
  };
}

export function writePlacementReport(outDir: string, meta: PlacementMeta, variants: Variant[], runs: PlacementRun[]): string {
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify({ meta, variants, runs }, null, 1));
  const charts: string[] = [];
  for (const v of variants) {
    // The last round's open-loop runs (else closed), the middle action of each.
    const last = (kind: string): ReloadResult | undefined => {
      const all = runs.filter((r) => r.variant === v.name && r.result.kind === kind);
      const open = all.filter((r) => r.result.mode === "open");
      return (open.length > 0 ? open : all).reduce<PlacementRun | undefined>((a, r) => (a && a.round > r.round ? a : r), undefined)?.result;
    };
    for (const kind of ["edit", "toggle"]) {
      const r = last(kind);
      if (!r) continue;
      const file = `window-${kind}-${v.name}.svg`;
      fs.writeFileSync(path.join(outDir, file), timeSeriesChart(zoom(r, Math.floor(r.actions.length / 2))));
      charts.push(file);
    }
  }
  const loads = meta.loadavgSamples;
  const text = [
    "# Live edits vs the traffic on the same machine: build placement compared",
    "",
    `Envoy ${meta.envoyVersion} --concurrency 1; ${meta.cores} cores (${meta.cpuModel}); commit ${meta.commit}; ${meta.startedAt} -> ${meta.finishedAt}  `,
    `1-min load average during the run: min ${fmt(Math.min(...loads))}, median ${fmt(median(loads))}, max ${fmt(Math.max(...loads))} (other sessions share this machine)  `,
    `${meta.rounds} rounds; in each, every variant runs edit, rebuild and toggle (${meta.modes.join(" and ")} loop${meta.modes.includes("open") ? `, open at ${meta.rate} req/s` : ""}); the variants' order rotates per round.`,
    ...(meta.skipped.length > 0 ? [`Left out: ${meta.skipped.join("; ")}.`] : []),
    "",
    "## Variants",
    "",
    ...variants.map((v) => `- \`${v.name}\`: ${v.description}`),
    "",
    `## Targets (issue 16 part 3; ${meta.modes.includes("open") ? "open" : "closed"} loop, medians of per-round ratios)`,
    "",
    `edit p99 in/out <= ${TARGETS.edit}x, rebuild (no push) <= ${TARGETS.rebuild}x, save -> first new response median < ${TARGETS.saveToLiveMs} ms`,
    "",
    "```",
    ...verdicts(runs, variants, meta.modes.includes("open") ? "open" : "closed"),
    "```",
    "",
    "## Per variant",
    "",
    "Ratios: p99 of requests started inside reload windows [action, max(action + 1 s, first new response + 250 ms)) over p99",
    "of the rest of the same run; median of the rounds (min-max). save -> first new: every edit of every round, pooled.",
    "Paired: per action, p99 inside its window over p99 of the second just before it (when outside every window), pooled",
    "over rounds: median (interquartile range, number of actions). Load from elsewhere that comes and goes over seconds",
    "mostly cancels in a pair; it does not in the run-wide ratio, whose outside p99 it sets.",
    "",
    ...rows(runs, variants, meta.modes),
    "",
    "## An edit window next to a toggle window",
    "",
    "The middle action of the last round's run, 1 s before to 3 s after it (100 ms buckets: p50, p99, max; shaded: the",
    "reload window; marks: first new response on the load and on a fresh connection).",
    "",
    ...variants.flatMap((v) => [`### ${v.name}`, "", `![edit ${v.name}](window-edit-${v.name}.svg) ![toggle ${v.name}](window-toggle-${v.name}.svg)`, ""]),
    `Raw: results.json (every run: per action timings, 100 ms series). Charts: ${charts.join(", ")}.`,
    "",
  ].join("\n");
  fs.writeFileSync(path.join(outDir, "report.md"), text);
  return text;
}
