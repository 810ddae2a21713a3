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
  // Issue 16: the AssemblyScript filter against the same filter in Rust (proxy-wasm crate), on
  // direct_response (no upstream in the way), read from the same run.
  const overNone = (id: string, mode: "closed" | "open"): number => {
    const r = row(rows, id, mode);
    const none = row(rows, "dr-none", mode);
    return r && none ? r.envoyCpuUs - none.envoyCpuUs : NaN;
  };
  const vsRust = (mode: "closed" | "open"): number => overNone("dr-wasm", mode) / overNone("dr-wasm-rust", mode);
  const us = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} us` : "n/a");
  if (row(rows, "dr-wasm-rust", "closed")) {
    const cpu = vsRust("closed");
    goals.push({
      goal: "AssemblyScript Envoy CPU per request over no filter <= 1.10x the Rust filter's (direct_response)",
      measured: `${x(cpu)} (closed loop: +${us(overNone("dr-wasm", "closed"))} vs +${us(overNone("dr-wasm-rust", "closed"))})`,
      met: Number.isFinite(cpu) ? cpu <= 1.1 : null,
      also: [
        `open loop: ${x(vsRust("open"))} (+${us(overNone("dr-wasm", "open"))} vs +${us(overNone("dr-wasm-rust", "open"))})`,
        ...(row(rows, "dr-wasm-o3", "closed") ? [`-O3 build, closed loop: +${us(overNone("dr-wasm-o3", "closed"))}`] : []),
      ],
    });
    const as = row(rows, "dr-wasm", "closed")?.reqPerSec.median;
    const rust = row(rows, "dr-wasm-rust", "closed")?.reqPerSec.median;
    const tput = as !== undefined && rust !== undefined ? as / rust : NaN;
    goals.push({
      goal: "AssemblyScript direct_response throughput >= the Rust filter's",
      measured: `${x(tput)} (closed loop, medians: ${fmt(as ?? NaN)} vs ${fmt(rust ?? NaN)} req/s)`,
      met: Number.isFinite(tput) ? tput >= 1 : null,
      also: [`proxied, closed loop: ${x((row(rows, "proxy-wasm", "closed")?.reqPerSec.median ?? NaN) / (row(rows, "proxy-wasm-rust", "closed")?.reqPerSec.median ?? NaN))}`],
    });
  }
  const rps = row(rows, "proxy-wasm", "closed")?.vsNone?.reqPerSec;
  goals.push({
    goal: "Wasm add-header throughput >= 0.85x no filter (proxied, closed loop; was 0.90x before issue 16)",
    measured: `${x(rps)} (closed loop, proxied)`,
    met: rps === undefined || !Number.isFinite(rps) ? null : rps >= 0.85,
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
  // Issue 16: an edit (compile + push) may cost its window at most 2x p99; the rebuild run (a
  // compile, nothing pushed) is the control, at most 1.5x; toggles and listener pushes are shown.
  const ratios = reloads.map((r) => ({ r, ratio: r.inside.p99 / r.outside.p99 }));
  const windowGoal = (kind: string, limit: number, what: string): void => {
    const judged = ratios.filter((c) => c.r.kind === kind);
    const worst = judged.reduce<(typeof ratios)[number] | undefined>((w, c) => (w === undefined || c.ratio > w.ratio ? c : w), undefined);
    goals.push({
      goal: `p99 inside ${what} windows <= ${limit}x outside`,
      measured: worst ? `worst ${x(worst.ratio)} (${worst.r.load})` : `no ${kind} runs`,
      met: judged.length === 0 ? null : judged.every((c) => c.ratio <= limit),
      also: judged.map((c) => `${c.r.load}: ${fmt(c.r.inside.p99)} / ${fmt(c.r.outside.p99)} ms = ${x(c.ratio)}`),
    });
  };
  windowGoal("edit", 2, "edit (compile + push)");
  windowGoal("rebuild", 1.5, "recompile-only (control: compile, nothing pushed)");
  const others = ratios.filter((c) => c.r.kind !== "edit" && c.r.kind !== "rebuild");
  if (others.length > 0) {
    goals[goals.length - 1]!.also.push(...others.map((c) => `(shown) ${c.r.kind}, ${c.r.load}: ${fmt(c.r.inside.p99)} / ${fmt(c.r.outside.p99)} ms = ${x(c.ratio)}`));
  }
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
