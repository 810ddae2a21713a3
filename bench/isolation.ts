// Isolation, measured: misbehaving Wasm filters (aborts, a bad configuration, unbounded memory,
// an endless loop, bad modules, a sha256 mismatch) against the real Envoy, each beside a good
// filter. Starts everything itself on loopback, prints the table and writes it with the raw JSON
// to bench/results/<date>-isolation/. Cleans up on success, failure and Ctrl-C.
//
//   npm run isolation [-- --only spin,abort-request] [--spin-window-ms 5000] [--policies closed,open]
import { parseArgs } from "node:util";
import { makeWorkDir, repoPath } from "../test/support/paths.ts";
import { Cleanup } from "./lib/cleanup.ts";
import { ScenarioContext } from "./lib/isolation/context.ts";
import { watchNacks } from "./lib/isolation/nack-watch.ts";
import { machineInfo, markdownTable, writeReport } from "./lib/isolation/report.ts";
import { runScenarios, SCENARIOS } from "./lib/isolation/run.ts";
import { startIsolationStack } from "./lib/isolation/stack.ts";
import type { FailPolicy } from "./lib/isolation/types.ts";

const { values } = parseArgs({
  options: {
    only: { type: "string", default: "" },
    "spin-window-ms": { type: "string", default: "5000" },
    policies: { type: "string", default: "" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(`npm run isolation [-- --only ${SCENARIOS.map((s) => s.id).join(",")}] [--spin-window-ms 5000] [--policies closed,open,reload]`);
  process.exit(0);
}
const only = values.only.split(",").map((s) => s.trim()).filter((s) => s !== "");
const unknown = only.filter((id) => !SCENARIOS.some((s) => s.id === id));
if (unknown.length > 0) {
  console.error(`unknown scenario(s): ${unknown.join(", ")} (known: ${SCENARIOS.map((s) => s.id).join(", ")})`);
  process.exit(2);
}
const spinWindowMs = Number(values["spin-window-ms"]);
if (!Number.isInteger(spinWindowMs) || spinWindowMs < 500 || spinWindowMs > 60_000) {
  console.error("--spin-window-ms: an integer from 500 to 60000");
  process.exit(2);
}

const cleanup = new Cleanup();
cleanup.installSignalHandlers();
const startedAt = new Date().toISOString();
const t0 = performance.now();
let exitCode = 0;
try {
  const workDir = makeWorkDir("isolation");
  console.log(`isolation: starting echo upstream, control plane, Envoy (logs in ${workDir})`);
  const stack = await startIsolationStack({ workDir, onStarted: (what, stop) => cleanup.add(what, stop) });
  const nacks = await watchNacks(stack.cp.adminUrl);
  cleanup.add("event stream", () => nacks.close());
  const ctx = new ScenarioContext(stack, nacks, { spinWindowMs, waitMs: 20_000 });
  const offered = await ctx.api.failPolicies();
  const asked = values.policies.split(",").map((s) => s.trim()).filter((s): s is FailPolicy => s === "closed" || s === "open" || s === "reload");
  const policies = asked.length > 0 ? asked.filter((p) => offered.includes(p)) : offered;
  const envoyVersion = (await stack.envoy.admin("/server_info")).body.match(/"version":\s*"([^"]+)"/)?.[1] ?? "envoy (version unknown)";
  const rows = await runScenarios(ctx, { only, policies, log: (line) => console.log(`isolation: ${line}`) });
  const dir = writeReport(repoPath("bench", "results"), rows, {
    startedAt, envoyVersion: `Envoy ${envoyVersion.split("/")[1] ?? envoyVersion}`, concurrency: 1, ...machineInfo(), spinWindowMs, policies,
    durationMs: performance.now() - t0,
  });
  console.log(`\n${markdownTable(rows)}\n\nnotes and raw JSON: ${dir}`);
  const broken = rows.filter((r) => r.harnessError !== undefined);
  if (broken.length > 0) {
    console.error(`${broken.length} scenario(s) did not run to the end: ${broken.map((r) => r.scenario).join(", ")} (see results.json)`);
    exitCode = 1;
  }
} catch (err) {
  console.error(`isolation failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  exitCode = 1;
} finally {
  await cleanup.run();
}
process.exit(exitCode);
