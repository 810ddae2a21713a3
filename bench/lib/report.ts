/** Writes results.json, report.md and the SVG charts; returns the text printed to the terminal. */
import fs from "node:fs";
import path from "node:path";
import { evaluateGoals, type Goal } from "./goals.ts";
import type { ReloadResult } from "./reload-run.ts";
import type { ActionTimeline } from "./reload-timeline.ts";
import { fmt, spread } from "./stats.ts";
import type { SteadyResult } from "./steady.ts";
import { summarizeSteady, type Row, type TargetInfo } from "./summary.ts";
import { barChart, timeSeriesChart } from "./svg.ts";
import { markdownTable, textTable, type Table } from "./table.ts";

export interface Meta {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  envoyVersion: string;
  envoyConcurrency: number;
  cores: number;
  cpuModel: string;
  node: string;
  commit: string;
  loadavgBefore: number[];
  loadavgAfter: number[];
  /** 1-minute load average sampled every 10 s during the run. */
  loadavgSamples: number[];
  options: Record<string, unknown>;
  workDir: string;
}

export interface BenchResults {
  meta: Meta;
  targets: TargetInfo[];
  steady: SteadyResult[];
  reload: ReloadResult[];
}

const ratio = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "" : `${v.toFixed(2)}x`);
const range = (s: { median: number; min: number; max: number }): string => `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})`;

function steadyTable(rows: Row[], mode: "closed" | "open"): Table {
  const own = rows.filter((r) => r.mode === mode);
  const headers = mode === "closed"
    ? ["scenario", "p50 ms", "p90 ms", "p99 ms (min-max)", "p99.9 ms", "max ms", "req/s (min-max)", "errors", "Envoy CPU us/req", "req/s vs none", "req/s vs native", "p99 vs none", "p99 vs native"]
    : ["scenario", "p50 ms", "p90 ms", "p99 ms (min-max)", "p99.9 ms", "max ms", "req/s", "errors", "Envoy CPU us/req", "p50 vs none", "p50 vs native", "p99 vs none", "p99 vs native", "send lag p99 ms"];
  return {
    headers,
    rows: own.map((r) => [
      r.target.label,
      fmt(r.p50),
      fmt(r.p90),
      range(r.p99),
      fmt(r.p999),
      fmt(r.max),
      mode === "closed" ? range(r.reqPerSec) : fmt(r.reqPerSec.median),
      String(r.errors),
      fmt(r.envoyCpuUs),
      ...(mode === "closed"
        ? [ratio(r.vsNone?.reqPerSec), ratio(r.vsNative?.reqPerSec), ratio(r.vsNone?.p99), ratio(r.vsNative?.p99)]
        : [ratio(r.vsNone?.p50), ratio(r.vsNative?.p50), ratio(r.vsNone?.p99), ratio(r.vsNative?.p99), fmt(r.sendLagP99)]),
    ]),
  };
}

function reloadTable(reloads: ReloadResult[]): Table {
  return {
    headers: ["scenario", "load", "actions", "requests (load+probe)", "non-2xx", "socket errors", "conn: close", "p99 in windows ms", "p99 outside ms", "in/out", "max in ms", "Envoy VMs created", "Envoy RSS MiB"],
    leftColumns: [0, 1],
    rows: reloads.map((r) => [
      r.title,
      r.load,
      String(r.actions.length),
      `${r.requests.toLocaleString("en-US")}+${r.probe.requests}`,
      String(r.non2xx + r.probe.non2xx),
      String(r.socketErrors + r.probe.socketErrors),
      String(r.connectionCloses),
      fmt(r.inside.p99),
      fmt(r.outside.p99),
      ratio(r.inside.p99 / r.outside.p99),
      fmt(r.inside.max),
      fmt((r.envoy.after["wasm.envoy.wasm.runtime.v8.created"] ?? NaN) - (r.envoy.before["wasm.envoy.wasm.runtime.v8.created"] ?? NaN)),
      `${fmt(r.envoy.before.rss_mib ?? NaN)} -> ${fmt(r.envoy.after.rss_mib ?? NaN)}`,
    ]),
  };
}

/** Where the reloads ran: the builds' CPUs, and Envoy's threads when they were placed. */
function placementLine(r: ReloadResult): string {
  const builds = `The control plane's builds confined to CPU ${r.buildCpus} (CP_BUILD_CPUS)`;
  if (r.envoyWorkerCpus === undefined) return `${builds}, Envoy not pinned;`;
  return `${builds}; Envoy's worker on CPU ${r.envoyWorkerCpus}, its main thread (fetches and compiles pushed modules) and V8's threads on ${r.buildCpus};`;
}

function splitCell(actions: ActionTimeline[], key: keyof ActionTimeline): string {
  const values = actions.map((a) => a[key]).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (values.length === 0) return "-";
  const s = spread(values);
  return `${fmt(s.median)} (${fmt(s.min)}..${fmt(s.max)})${values.length < actions.length ? ` [${values.length}/${actions.length}]` : ""}`;
}

function splitTable(reloads: ReloadResult[]): Table {
  const rows: string[][] = [];
  for (const r of reloads) {
    for (const what of [...new Set(r.actions.map((a) => a.what))]) {
      const actions = r.actions.filter((a) => a.what === what);
      rows.push([
        `${r.kind}: ${what}`,
        r.load,
        String(actions.length),
        splitCell(actions, "actionToBuilt"),
        splitCell(actions, "buildMs"),
        splitCell(actions, "builtToSent"),
        splitCell(actions, "sentToAcked"),
        splitCell(actions, "ackedToFirstNew"),
        splitCell(actions, "actionToFirstNew"),
        splitCell(actions, "actionToFirstNewFresh"),
        String(actions.reduce((n, a) => n + a.nacks, 0)),
      ]);
    }
  }
  return {
    headers: ["scenario: action", "load", "n", "action -> built", "compile", "built -> sent", "sent -> ACK", "ACK -> first new", "action -> first new (load)", "action -> first new (fresh conn)", "NACKs"],
    leftColumns: [0, 1],
    rows,
  };
}

function goalLines(goals: Goal[]): string[] {
  return goals.flatMap((g) => [
    `${g.met === null ? "n/a   " : g.met ? "met   " : "MISSED"}  ${g.goal}: ${g.measured}`,
    ...g.also.map((a) => `          also: ${a}`),
  ]);
}

function charts(outDir: string, rows: Row[], reloads: ReloadResult[]): string[] {
  const files: string[] = [];
  const write = (name: string, svg: string): void => {
    fs.writeFileSync(path.join(outDir, name), svg);
    files.push(name);
  };
  const steadyRows = rows.filter((r) => r.rounds > 0);
  for (const mode of ["open", "closed"] as const) {
    const own = steadyRows.filter((r) => r.mode === mode);
    if (own.length === 0) continue;
    write(`latency-${mode}.svg`, barChart({
      title: `Latency per scenario, ${mode === "open" ? "open loop (fixed rate)" : "closed loop (fixed connections)"}: median of rounds; whisker = p99 min-max across rounds`,
      unit: "ms",
      categories: own.map((r) => r.target.label),
      series: [
        { name: "p50", values: own.map((r) => r.p50) },
        { name: "p99", values: own.map((r) => r.p99.median), low: own.map((r) => r.p99.min), high: own.map((r) => r.p99.max) },
        { name: "p99.9", values: own.map((r) => r.p999) },
      ],
    }));
  }
  const closed = steadyRows.filter((r) => r.mode === "closed");
  if (closed.length > 0) {
    write("throughput.svg", barChart({
      title: "Throughput, closed loop: median of rounds; whisker = min-max",
      unit: "requests/s",
      categories: closed.map((r) => r.target.label),
      series: [{ name: "req/s", values: closed.map((r) => r.reqPerSec.median), low: closed.map((r) => r.reqPerSec.min), high: closed.map((r) => r.reqPerSec.max) }],
    }));
    const withCpu = closed.filter((r) => Number.isFinite(r.envoyCpuUs));
    write("envoy-cpu.svg", barChart({
      title: "Envoy CPU (user+system) per request, closed loop",
      unit: "microseconds per request",
      categories: withCpu.map((r) => r.target.label),
      series: [{ name: "Envoy us/req", values: withCpu.map((r) => r.envoyCpuUs) }],
    }));
  }
  for (const r of reloads) {
    write(`reload-${r.kind}-${r.mode}.svg`, timeSeriesChart({
      title: `${r.title}, ${r.load}: ${r.actions.length} actions, ${r.non2xx + r.socketErrors} failed requests`,
      points: r.series,
      bucketMs: 100,
      actions: r.actions.map((a) => ({ t: a.at, label: a.label })),
      windows: r.windows,
      firstNew: r.actions.map((a) => a.firstNewAt).filter((v): v is number => v !== undefined),
      firstNewFresh: r.actions.map((a) => a.firstNewFreshAt).filter((v): v is number => v !== undefined),
    }));
  }
  return files;
}

const METHOD = [
  "- Everything runs on one machine, on 127.0.0.1: load generator (this process), upstream (its own node process), Envoy",
  "  (`--concurrency` as above, `--disable-hot-restart`, `-l info`), control planes, and other sessions' work. Latency and",
  "  throughput move with the machine's load; Envoy CPU per request moves much less and is the cleanest cost measure.",
  "- Closed loop: autocannon (fixed connections, pipelining 1), latency from each response's float timing (autocannon's",
  "  histogram has 1 ms resolution). autocannon 9 ignores `connection: close`; each client is patched to reconnect instead.",
  "- Open loop: requests on a fixed schedule through a node:http keep-alive pool, latency from handing the request to",
  "  node:http (so waiting for a connection counts). Not autocannon's overallRate, which sends each connection's per-second",
  "  quota back to back and stops sending when a connection stalls (coordinated omission). Send lag = how late the",
  "  1 ms scheduler sent against the schedule (the loader's own health).",
  "- Rows marked ECDS are the product path: controlplane/main.ts as a process, Envoy from envoy-bootstrap/envoy.yaml.",
  "  The control plane always routes to its upstream, so direct_response + Wasm runs a static Envoy loading the modules",
  "  that control plane built (downloaded by sha256 from its module server) from local files, same PluginConfig.",
  "- Native and Lua rows do the Wasm filter's work: add the request header and the response header.",
  "- Reloads: `edit` saves a new stamp into the filter source; `rebuild` (the control) saves a comment-only change that",
  "  compiles to the same module, so nothing is pushed and only the compile's CPU remains; `toggle` is the admin API's",
  "  disable/enable (RDS); `listener` adds and removes a filter folder (LDS + ECDS). A listener change leaves kept-alive",
  "  connections on the old filter chain until Envoy drains them (`connection: close` over `--drain-time-s`, gradually),",
  "  so for `listener` the fresh-connection probe tells when the change is live in Envoy.",
];

export function writeReport(outDir: string, results: BenchResults): string {
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 1));
  const rows = summarizeSteady(results.targets, results.steady);
  const goals = evaluateGoals(rows, results.reload);
  fs.writeFileSync(path.join(outDir, "summary.json"), JSON.stringify({ rows, goals }, null, 1));
  const chartFiles = charts(outDir, rows, results.reload);
  const m = results.meta;
  const o = m.options;
  const header = [
    `Envoy ${m.envoyVersion}, --concurrency ${m.envoyConcurrency}; ${m.cores} cores (${m.cpuModel}); node ${m.node}; commit ${m.commit}`,
    `load average before ${m.loadavgBefore.map((v) => v.toFixed(2)).join(" ")}, after ${m.loadavgAfter.map((v) => v.toFixed(2)).join(" ")}; 1-min samples during the run: min ${fmt(Math.min(...m.loadavgSamples))}, median ${fmt(spread(m.loadavgSamples).median)}, max ${fmt(Math.max(...m.loadavgSamples))} (other sessions share this machine)`,
    `${m.quick ? "QUICK MODE (numbers are not meaningful)" : "full run"}${o.buildNice !== undefined ? `, CP_BUILD_NICE=${String(o.buildNice)}` : ""}: ${o.rounds} rounds x (closed ${o.closedS} s with ${o.connections} connections + open ${o.openS} s at ${o.rate} req/s) per scenario, after ${o.warmupS} s warm-up each; ${m.startedAt} -> ${m.finishedAt}`,
  ];
  const closedT = steadyTable(rows, "closed");
  const openT = steadyTable(rows, "open");
  const reloadT = reloadTable(results.reload);
  const splitT = splitTable(results.reload);
  const md = [
    `# Wasm filter cost and live-reload cost, against real Envoy`,
    "",
    ...header.map((h) => `${h}  `),
    "",
    "## Targets",
    "",
    "```",
    ...goalLines(goals),
    "```",
    "",
    ...(results.steady.length === 0 ? [] : [
      "## Steady state",
      "",
      "Same listener shape everywhere (HCM + filter(s) + router); only the filter differs. Every filter adds the request header",
      "`x-wasm-processed: yes` and the response header `x-wasm-filter: add-header` (checked before measuring). Values are medians",
      "across rounds; ratios are per-round ratios (same round, back to back) then the median. Envoy CPU us/req = Envoy's",
      "user+system CPU time during the run divided by the requests answered.",
      "",
      `### Closed loop (autocannon, ${o.connections} connections, ${o.closedS} s per round)`,
      "",
      markdownTable(closedT),
      "",
      `### Open loop (${o.rate} req/s fixed schedule, ${o.openS} s per round)`,
      "",
      markdownTable(openT),
      "",
      "![latency, open loop](latency-open.svg)",
      "![latency, closed loop](latency-closed.svg)",
      "![throughput](throughput.svg)",
      "![Envoy CPU per request](envoy-cpu.svg)",
      "",
    ]),
    ...(results.reload.length === 0 ? [] : [
      "## Reloads under load (control plane + Envoy, the product path)",
      "",
      "Reload window: [action, max(action + 1 s, first new response + 250 ms)). Failed = non-2xx or no response, on the load",
      "and on a probe that opens a fresh connection every 50 ms. Times in ms; median (min..max) over the actions; [n/m] = seen",
      "for n of m actions. sent/ACK times are the control plane's own (GET /api/clients sentAt/ackedAt, polled every 20 ms).",
      ...(results.reload.some((r) => r.buildCpus !== undefined)
        ? [placementLine(results.reload.find((r) => r.buildCpus !== undefined)!),
          "other placements: `npm run bench:reload` (docs/build-isolation.md)."]
        : []),
      "",
      markdownTable(reloadT),
      "",
      markdownTable(splitT),
      "",
      ...results.reload.map((r) => `![${r.kind} ${r.mode}](reload-${r.kind}-${r.mode}.svg)`),
      "",
    ]),
    "## Method notes",
    "",
    ...METHOD,
    "",
    `Raw numbers: results.json (per round, per action, 100 ms series); summary.json (the rows above). Charts: ${chartFiles.join(", ")}.`,
    "",
  ].join("\n");
  fs.writeFileSync(path.join(outDir, "report.md"), md);
  return [
    ...header,
    "",
    ...(results.steady.length === 0 ? [] : [`closed loop (${o.connections} connections)`, textTable(closedT), "", `open loop (${o.rate} req/s)`, textTable(openT), ""]),
    ...(results.reload.length === 0 ? [] : ["reloads under load", textTable(reloadT), "", textTable(splitT), ""]),
    "targets (reported, not asserted)",
    ...goalLines(goals),
    "",
    `written: ${outDir}/report.md, results.json, summary.json, ${chartFiles.length} SVG charts`,
  ].join("\n");
}

