/** Command line of bench/run.ts: presets for the full and the quick run, every number overridable. */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";
import { repoPath } from "../../test/support/paths.ts";

export interface ReloadPlan {
  leadMs: number;
  intervalMs: number;
  actions: number;
  tailMs: number;
}

export interface BenchOptions {
  quick: boolean;
  out: string;
  concurrency: number;
  rounds: number;
  closedS: number;
  openS: number;
  warmupS: number;
  connections: number;
  rate: number;
  only: "all" | "steady" | "reload";
  /** Add rows for add-header built with -O3 (static Envoys). */
  o3: boolean;
  /** Add rows for the same filter in Rust (filters/hello-rust made to do add-header's work). */
  rust: boolean;
  /** CP_BUILD_NICE for the control planes (undefined: the product's default). */
  buildNice: number | undefined;
  /** Reload scenarios to run, in this order. */
  reloads: string[];
  reload: { edit: ReloadPlan; rebuild: ReloadPlan; toggle: ReloadPlan; listener: ReloadPlan; windowMs: number };
}

export const USAGE = `npm run bench [-- options]
  --quick              a few seconds per scenario (checks everything runs; numbers not meaningful)
  --out DIR            results directory (default bench/results/<date>)
  --concurrency N      Envoy worker threads (default 1)
  --rounds N           steady-state rounds (default 5; quick 1)
  --seconds S          seconds per steady run, closed and open each (default 5; quick 1)
  --rate R             open-loop requests/s (default 500: about a third of the slowest proxied
                       scenario's capacity here, so queueing does not dominate; quick 300)
  --connections C      closed-loop connections (default 10)
  --only steady|reload run one half
  --o3 / --skip-o3     add-header built with -O3 as 2 more rows (static Envoys): on in the full
                       run, off in --quick (the -O3 compile alone takes 5-30 s)
  --rust / --skip-rust the same filter in Rust (proxy-wasm crate, built by the control plane with
                       cargo) as 2 more rows: on in the full run when cargo is installed, off in --quick
  --build-nice N       CP_BUILD_NICE of the control planes (default: theirs, 10); 0 compiles at
                       Envoy's priority: shows how much of a reload's latency cost is CPU contention
  --reloads LIST       reload scenarios (default edit,rebuild,toggle,listener)
  --edit-actions N     edits in the edit scenario (default 30, every 2 s)`;

/** cargo on PATH (or $CARGO): the Rust rows need the control plane to build a Rust filter. */
function cargoInstalled(): boolean {
  return spawnSync(process.env.CARGO ?? "cargo", ["--version"], { stdio: "ignore" }).status === 0;
}

function positive(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got ${JSON.stringify(v)}`);
  return n;
}

function niceValue(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 19) throw new Error(`--build-nice: expected 0..19, got ${JSON.stringify(v)}`);
  return n;
}

function dateStamp(): string {
  return new Date().toISOString().replace(/:\d\d\.\d+Z$/, "").replace(":", "-");
}

export function parseOptions(argv: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      o3: { type: "boolean", default: false },
      "skip-o3": { type: "boolean", default: false },
      rust: { type: "boolean", default: false },
      "skip-rust": { type: "boolean", default: false },
      "build-nice": { type: "string" },
      out: { type: "string" },
      concurrency: { type: "string" },
      rounds: { type: "string" },
      seconds: { type: "string" },
      rate: { type: "string" },
      connections: { type: "string" },
      only: { type: "string", default: "all" },
      "edit-actions": { type: "string" },
      reloads: { type: "string", default: "edit,rebuild,toggle,listener" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return "help";
  for (const r of values.reloads.split(",").map((x) => x.trim()).filter(Boolean)) {
    if (!["edit", "rebuild", "toggle", "listener"].includes(r)) throw new Error(`--reloads: unknown scenario ${JSON.stringify(r)} (edit, rebuild, toggle, listener)`);
  }
  if (!["all", "steady", "reload"].includes(values.only)) throw new Error(`--only: steady or reload, got ${JSON.stringify(values.only)}`);
  const q = values.quick;
  const seconds = positive("seconds", values.seconds, q ? 1 : 5);
  return {
    quick: q,
    out: path.resolve(values.out ?? repoPath("bench", "results", dateStamp())),
    concurrency: positive("concurrency", values.concurrency, 1),
    rounds: positive("rounds", values.rounds, q ? 1 : 5),
    closedS: seconds,
    openS: seconds,
    warmupS: q ? 0.3 : 2,
    connections: positive("connections", values.connections, 10),
    rate: positive("rate", values.rate, q ? 300 : 500),
    only: values.only as BenchOptions["only"],
    o3: q ? values.o3 : !values["skip-o3"],
    rust: q ? values.rust : !values["skip-rust"] && cargoInstalled(),
    buildNice: values["build-nice"] === undefined ? undefined : niceValue(values["build-nice"]),
    reloads: values.reloads.split(",").map((r) => r.trim()).filter(Boolean),
    reload: {
      // edit the source every 2 s (and, as its control, recompile to the same module); toggle every 1 s; add/remove the folder every 6 s (a
      // listener change drains kept-alive connections gradually, see README).
      edit: { leadMs: q ? 1000 : 2000, intervalMs: 2000, actions: positive("edit-actions", values["edit-actions"], q ? 2 : 30), tailMs: q ? 2000 : 3000 },
      rebuild: { leadMs: q ? 1000 : 2000, intervalMs: 2000, actions: q ? 1 : 10, tailMs: q ? 2000 : 3000 },
      toggle: { leadMs: q ? 1000 : 2000, intervalMs: 1000, actions: q ? 2 : 30, tailMs: q ? 1500 : 2000 },
      listener: { leadMs: q ? 1000 : 2000, intervalMs: q ? 3000 : 6000, actions: q ? 2 : 8, tailMs: q ? 3000 : 6000 },
      windowMs: 1000,
    },
  };
}
