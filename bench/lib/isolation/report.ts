/** The isolation table (Markdown) and the raw JSON, printed and written to bench/results/. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { summarize } from "./traffic.ts";
import type { ScenarioResult } from "./types.ts";

export interface RunInfo {
  startedAt: string;
  envoyVersion: string;
  concurrency: number;
  cores: number;
  loadAverage: number[];
  spinWindowMs: number;
  policies: string[];
  durationMs: number;
}

const cell = (text: string): string => text.replace(/\|/g, "\\|").replace(/\n/g, " ");

function statusCell(r: ScenarioResult): string {
  const parts: string[] = [];
  if (r.triggered.length > 0) parts.push(`trigger: ${summarize(r.triggered)}`);
  if (r.other.length > 0) parts.push(`${r.triggered.length > 0 ? "others" : "all"}: ${summarize(r.other)}`);
  return parts.join("; ") || "-";
}

function goodCell(r: ScenarioResult): string {
  if (!r.goodFilterUnaffected) return "no";
  const failed = r.other.filter((o) => o !== 200);
  // add-header still ran (its response header is on the 503s); the request fails in the bad filter.
  return failed.length > 0 ? `yes, ran; requests still fail (${summarize(failed)})` : "yes";
}

function recoveryCell(r: ScenarioResult): string {
  if (r.recovery.ms === null) return `${r.recovery.action}: not healthy within the deadline`;
  if (r.recovery.ms === 0) return r.recovery.action;
  return `${r.recovery.ms} ms (${r.recovery.action})`;
}

export function markdownTable(rows: readonly ScenarioResult[]): string {
  const head = "| scenario | fail policy | Envoy alive (/ready) | status codes seen | good filter unaffected | NACK or runtime error | recovery |";
  const sep = "|---|---|---|---|---|---|---|";
  const lines = rows.map((r) => `| ${cell(r.scenario)} | ${r.failPolicy} | ${r.envoyAlive ? "yes" : "NO"} (${cell(r.readyDuring)}) | ${cell(statusCell(r))} | ${cell(goodCell(r))} | ${cell(r.controlPlane)} | ${cell(recoveryCell(r))} |`);
  return [head, sep, ...lines].join("\n");
}

export function markdownReport(rows: readonly ScenarioResult[], info: RunInfo): string {
  const notes = rows.map((r) => `- **${r.scenario}** (${r.failPolicy}): ${r.what}.\n${r.notes.map((n) => `  - ${cell(n)}`).join("\n")}`);
  return [
    `# Isolation: misbehaving filters against the real Envoy`,
    "",
    `Run ${info.startedAt}, ${info.envoyVersion}, --concurrency ${info.concurrency}, ${info.cores} cores, load average ${info.loadAverage.map((l) => l.toFixed(2)).join(" ")}, ` +
      `fail policies ${info.policies.join("/")}, spin window ${info.spinWindowMs} ms, total ${Math.round(info.durationMs / 1000)} s.`,
    "Every row runs beside the good filter add-header in the same chain (one listener, one route: there is no second path).",
    "",
    markdownTable(rows),
    "",
    "## What each row measured",
    "",
    ...notes,
    "",
  ].join("\n");
}

/** bench/results/<date>-isolation/{report.md, results.json}; returns the folder. */
export function writeReport(resultsRoot: string, rows: readonly ScenarioResult[], info: RunInfo): string {
  const stamp = info.startedAt.slice(0, 16).replace(/:/g, "-");
  const dir = path.join(resultsRoot, `${stamp}-isolation`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "report.md"), markdownReport(rows, info));
  fs.writeFileSync(path.join(dir, "results.json"), JSON.stringify({ info, rows }, null, 2) + "\n");
  return dir;
}

export function machineInfo(): Pick<RunInfo, "cores" | "loadAverage"> {
  return { cores: os.cpus().length, loadAverage: os.loadavg() };
}
