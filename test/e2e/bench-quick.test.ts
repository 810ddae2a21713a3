// `npm run bench -- --quick` end to end: every scenario runs against the real Envoy and produces
// numbers, and no request fails while the control plane reloads filters under load (a
// correctness property of the product). Nothing about speed is asserted.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { benchPlacement } from "../../bench/lib/reload-variants.ts";
import type { BenchResults } from "../../bench/lib/report.ts";
import { repoPath } from "../support/paths.ts";

const TARGETS = ["direct", "proxy-none", "proxy-native", "proxy-lua", "proxy-wasm", "proxy-wasm5", "dr-none", "dr-native", "dr-lua", "dr-wasm", "dr-wasm5"];
const RELOADS = ["edit", "rebuild", "toggle", "listener"];

function runQuickBench(out: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["tsx", "bench/run.ts", "--quick", "--out", out], { cwd: repoPath(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    // The bench cleans up after itself on SIGINT; it has 2 minutes of budget and a margin here.
    const timer = setTimeout(() => child.kill("SIGINT"), 210_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("bench --quick", { timeout: 240_000 }, () => {
  let out: string;
  let results: BenchResults;
  let output: string;

  before(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), "bench-quick-"));
    const run = await runQuickBench(out);
    output = run.output;
    assert.equal(run.code, 0, `bench exited with ${run.code}:\n${output.slice(-4000)}`);
    results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as BenchResults;
  });

  after(() => {
    if (out) fs.rmSync(out, { recursive: true, force: true });
  });

  it("writes the report, the raw JSON and the charts", () => {
    for (const f of ["report.md", "results.json", "summary.json", "latency-open.svg", "latency-closed.svg", "throughput.svg", "reload-edit-open.svg"]) {
      assert.ok(fs.existsSync(path.join(out, f)), `${f} written`);
    }
    assert.match(fs.readFileSync(path.join(out, "report.md"), "utf8"), /## Targets/);
    assert.match(results.meta.envoyVersion, /^\d+\.\d+\.\d+$/);
  });

  it("every steady-state scenario ran closed and open loop and produced numbers", () => {
    assert.deepEqual(results.targets.map((t) => t.id).sort(), [...TARGETS].sort());
    for (const id of TARGETS) for (const mode of ["closed", "open"] as const) {
      const runs = results.steady.find((s) => s.targetId === id && s.mode === mode)?.runs ?? [];
      assert.ok(runs.length >= 1, `${id}/${mode} ran`);
      for (const r of runs) {
        assert.ok(r.latency.count > 0, `${id}/${mode}: answered requests`);
        assert.ok(Number.isFinite(r.latency.p50) && Number.isFinite(r.latency.p99) && r.latency.p99 >= r.latency.p50, `${id}/${mode}: percentiles`);
        assert.ok(r.reqPerSec > 0, `${id}/${mode}: throughput`);
      }
    }
  });

  it("every reload scenario ran under both loads with zero failed requests", () => {
    for (const kind of RELOADS) for (const mode of ["open", "closed"] as const) {
      const r = results.reload.find((x) => x.kind === kind && x.mode === mode);
      assert.ok(r, `${kind}/${mode} ran`);
      assert.ok(r.actions.length >= 1 && r.requests > 0 && r.probe.requests > 0, `${kind}/${mode}: actions taken under load`);
      assert.ok(r.inside.count > 0 && r.outside.count > 0, `${kind}/${mode}: latency inside and outside reload windows`);
      const errors = JSON.stringify({ load: r.errorKinds, probe: r.probe.errorKinds });
      assert.equal(r.non2xx, 0, `${kind}/${mode}: non-2xx responses on the load`);
      assert.equal(r.socketErrors, 0, `${kind}/${mode}: socket errors on the load ${errors}`);
      assert.equal(r.probe.non2xx, 0, `${kind}/${mode}: non-2xx responses on fresh connections`);
      assert.equal(r.probe.socketErrors, 0, `${kind}/${mode}: socket errors on fresh connections ${errors}`);
    }
  });

  it("on >= 2 CPUs the reloads ran with Envoy's worker apart from its other threads, and say so", (t) => {
    const placement = benchPlacement();
    if (placement === undefined) return t.skip("one CPU: nothing to place");
    for (const r of results.reload) {
      assert.equal(r.buildCpus, placement.buildCpus, `${r.kind}/${r.mode}: builds confined`);
      assert.equal(r.envoyWorkerCpus, placement.envoyCpus, `${r.kind}/${r.mode}: Envoy's worker placed`);
    }
    const report = fs.readFileSync(path.join(out, "report.md"), "utf8");
    assert.match(report, new RegExp(`Envoy's worker on CPU ${placement.envoyCpus}, its main thread`));
  });
});
