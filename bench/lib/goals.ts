/**
 * The targets, checked against the numbers (reported, never asserted). Each goal has one
 * primary measurement; "also" lines show the same ratio elsewhere, for context.
 */
import type { ReloadResult } from "./reload-run.ts";
import { fmt, median } from "./stats.ts";
import type { Row } from "./summary.ts";

export interface Goal {
  goal: string;
  measured: string;
  met: boolean | null;
  also: string[];
}

const row = (rows: Row[], id: string, mode: "closed" | "open"): Row | undefined => rows.find((r) => r.target.id === id && r.mode === mode);
const x = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "n/a" : `${v.toFixed(2)}x`);

export function reloadFailures(r: ReloadResult): number {
  return r.non2xx + r.socketErrors + r.probe.non2xx + r.probe.socketErrors;
}

export function saveToFirstNew(r: ReloadResult): number[] {
  return r.actions.map((a) => a.actionToFirstNew ?? NaN).filter(Number.isFinite);
}

export function evaluateGoals(rows: Row[], reloads: ReloadResult[]): Goal[] {
  const goals: Goal[] = [];
  const p99 = row(rows, "proxy-wasm", "open")?.vsNative?.p99;
  goals.push({
    goal: "Wasm add-header p99 <= 1.10x native header_mutation",
    measured: `${x(p99)} (open loop, proxied, median of per-round ratios)`,
    met: p99 === undefined || !Number.isFinite(p99) ? null : p99 <= 1.1,
    also: [
      `direct_response, open loop: ${x(row(rows, "dr-wasm", "open")?.vsNative?.p99)}`,
      `proxied, closed loop: ${x(row(rows, "proxy-wasm", "closed")?.vsNative?.p99)}`,
      `direct_response, closed loop: ${x(row(rows, "dr-wasm", "closed")?.vsNative?.p99)}`,
      ...(row(rows, "proxy-wasm-o3", "open") ? [`-O3 build, open loop: proxied ${x(row(rows, "proxy-wasm-o3", "open")?.vsNative?.p99)}, direct_response ${x(row(rows, "dr-wasm-o3", "open")?.vsNative?.p99)}`] : []),
    ],
  });
  const rps = row(rows, "proxy-wasm", "closed")?.vsNone?.reqPerSec;
  goals.push({
    goal: "Wasm add-header throughput >= 0.90x no filter",
    measured: `${x(rps)} (closed loop, proxied)`,
    met: rps === undefined || !Number.isFinite(rps) ? null : rps >= 0.9,
    also: [
      `direct_response: ${x(row(rows, "dr-wasm", "closed")?.vsNone?.reqPerSec)}`,
      `Envoy CPU per request vs no filter: proxied ${x(row(rows, "proxy-wasm", "closed")?.vsNone?.envoyCpuUs)}, direct_response ${x(row(rows, "dr-wasm", "closed")?.vsNone?.envoyCpuUs)}`,
      ...(row(rows, "dr-wasm-rust", "closed") ? [`Rust (proxy-wasm crate), same work: proxied ${x(row(rows, "proxy-wasm-rust", "closed")?.vsNone?.reqPerSec)}, direct_response ${x(row(rows, "dr-wasm-rust", "closed")?.vsNone?.reqPerSec)}; Envoy CPU vs no filter ${x(row(rows, "proxy-wasm-rust", "closed")?.vsNone?.envoyCpuUs)} / ${x(row(rows, "dr-wasm-rust", "closed")?.vsNone?.envoyCpuUs)}`] : []),
      ...(row(rows, "proxy-wasm-o3", "closed") ? [`-O3 build: proxied ${x(row(rows, "proxy-wasm-o3", "closed")?.vsNone?.reqPerSec)}, direct_response ${x(row(rows, "dr-wasm-o3", "closed")?.vsNone?.reqPerSec)}; Envoy CPU vs no filter ${x(row(rows, "proxy-wasm-o3", "closed")?.vsNone?.envoyCpuUs)} / ${x(row(rows, "dr-wasm-o3", "closed")?.vsNone?.envoyCpuUs)}`] : []),
    ],
  });
  const failing = reloads.filter((r) => reloadFailures(r) > 0);
  goals.push({
    goal: "zero failed requests in every reload scenario",
    measured: reloads.length === 0 ? "no reload runs" : failing.length === 0
      ? `0 failed of ${reloads.reduce((n, r) => n + r.requests + r.probe.requests, 0).toLocaleString("en-US")} requests (${reloads.length} runs, load + fresh-connection probe)`
      : failing.map((r) => `${r.kind}/${r.mode}: ${reloadFailures(r)} failed (${JSON.stringify({ ...r.errorKinds, ...r.probe.errorKinds })}, non-2xx ${r.non2xx + r.probe.non2xx})`).join("; "),
    met: reloads.length === 0 ? null : failing.length === 0,
    also: [],
  });
  // The rebuild run is the control for "edit" (a compile, nothing pushed): shown, not judged.
  const ratios = reloads.map((r) => ({ r, ratio: r.inside.p99 / r.outside.p99 }));
  const judged = ratios.filter((c) => c.r.kind !== "rebuild");
  const worst = judged.reduce<(typeof ratios)[number] | undefined>((w, c) => (w === undefined || c.ratio > w.ratio ? c : w), undefined);
  goals.push({
    goal: "p99 inside reload windows <= 1.5x outside",
    measured: worst ? `worst ${x(worst.ratio)} (${worst.r.kind}, ${worst.r.load})` : "no reload runs",
    met: judged.length === 0 ? null : judged.every((c) => c.ratio <= 1.5),
    also: ratios.map((c) => `${c.r.kind}${c.r.kind === "rebuild" ? " (control: compile only, no push)" : ""}, ${c.r.load}: ${fmt(c.r.inside.p99)} / ${fmt(c.r.outside.p99)} ms = ${x(c.ratio)}`),
  });
  const edits = reloads.filter((r) => r.kind === "edit");
  const primary = edits.find((r) => r.mode === "open") ?? edits[0];
  const med = primary ? median(saveToFirstNew(primary)) : NaN;
  goals.push({
    goal: "save-to-first-new-response median < 1 s",
    measured: primary ? `${fmt(med)} ms (${primary.load}, ${saveToFirstNew(primary).length} edits)` : "no edit runs",
    met: Number.isFinite(med) ? med < 1000 : null,
    also: edits.filter((r) => r !== primary).map((r) => `${r.load}: ${fmt(median(saveToFirstNew(r)))} ms`),
  });
  return goals;
}
