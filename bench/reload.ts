// Save-to-live: how long from saving a filter's source until Envoy answers with the new module.
// Split in two: save -> module built (watcher debounce + compile + validate), and built -> first
// response through Envoy that shows it (snapshot, ECDS push, Envoy's fetch, cache-miss re-send,
// VM creation). Real control plane process, real Envoy, loopback only.
//
//   npm run bench:reload [-- --edits 10]
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { allocatePorts, copyFilters, startControlPlane } from "../test/support/controlplane.ts";
import { startEchoUpstream } from "../test/support/echo.ts";
import { startEnvoy } from "../test/support/envoy.ts";
import { httpGet } from "../test/support/http.ts";
import { makeWorkDir, repoPath } from "../test/support/paths.ts";
import { waitFor } from "../test/support/wait.ts";

const { values } = parseArgs({ options: { edits: { type: "string", default: "10" } } });
const edits = Number(values.edits);

function stampSource(version: string): string {
  const seed = fs.readFileSync(repoPath("filters", "add-header", "index.ts"), "utf8");
  return seed
    .replace(/"x-wasm-processed", "yes"/, `"x-stamp", "${version}"`)
    .replace(/registerRootContext\(([\s\S]*?)"add-header"\)/, 'registerRootContext($1"stamp")');
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const workDir = makeWorkDir("bench-reload");
const filtersDir = copyFilters(path.join(workDir, "filters"));
const ports = await allocatePorts();
const echo = await startEchoUpstream();
const cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
const envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, workDir, concurrency: 1 });
const url = `http://127.0.0.1:${ports.listener}/headers`;
const stampOf = async (): Promise<string | undefined> => {
  const r = await httpGet(url);
  return r.status === 200 ? (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-stamp"] : undefined;
};

try {
  fs.mkdirSync(path.join(filtersDir, "stamp"));
  fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource("v0"));
  await waitFor(async () => (await stampOf()) === "v0", { what: "stamp v0 live", timeoutMs: 60_000 });

  const rows: { build: number; push: number; total: number; compile: number }[] = [];
  for (let i = 1; i <= edits; i++) {
    const version = `v${i}`;
    const before = (await cp.filter("stamp"))?.sha256;
    const savedAt = Date.now();
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource(version));
    const built = await waitFor(async () => {
      const f = await cp.filter("stamp");
      return f && f.status === "ok" && f.sha256 !== before ? f : undefined;
    }, { what: `build of ${version}`, timeoutMs: 60_000, intervalMs: 5 });
    await waitFor(async () => (await stampOf()) === version, { what: `${version} live`, timeoutMs: 60_000, intervalMs: 2 });
    const liveAt = Date.now();
    const builtAt = Date.parse(built.builtAt!);
    rows.push({ build: builtAt - savedAt, compile: built.buildMs!, push: liveAt - builtAt, total: liveAt - savedAt });
  }
  const clients = await cp.clients();
  const line = (name: string, xs: number[]) => `${name.padEnd(34)} ${String(percentile(xs, 50)).padStart(6)} ${String(percentile(xs, 90)).padStart(6)} ${String(Math.min(...xs)).padStart(6)} ${String(Math.max(...xs)).padStart(6)}`;
  const report = [
    `save-to-live over ${edits} edits (ms; Envoy 1.40.0, --concurrency 1, unoptimised asc build)`,
    `${"".padEnd(34)} ${"p50".padStart(6)} ${"p90".padStart(6)} ${"min".padStart(6)} ${"max".padStart(6)}`,
    line("save -> built (debounce+compile)", rows.map((r) => r.build)),
    line("  of which compile+validate", rows.map((r) => r.compile)),
    line("built -> first new response", rows.map((r) => r.push)),
    line("save -> first new response", rows.map((r) => r.total)),
    `cache-miss re-sends: ${clients[0]?.cacheMissResends ?? 0}; NACKs recorded: ${clients.flatMap((c) => Object.values(c.types)).filter((t) => t.lastNack).length}`,
  ].join("\n");
  console.log(report);
  fs.mkdirSync(repoPath("bench", "results"), { recursive: true });
  fs.writeFileSync(repoPath("bench", "results", "reload.txt"), report + "\n");
} finally {
  await envoy.stop();
  await cp.kill("SIGTERM");
  await echo.close();
}
