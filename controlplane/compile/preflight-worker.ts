// Worker-thread entry for preflight.ts: starts plugins in the in-process proxy-wasm host
// (cli/wasm-host.ts) and runs filter.test.json cases, one job at a time, and reports how each went.
// A worker so that a module looping in its start code can be terminated; long-lived so that a
// pre-flight costs the module's run (milliseconds), not loading tsx and the host (~200 ms).
// Every job and every case gets a fresh Wasm instance: nothing carries over between them.

import { parentPort } from "node:worker_threads";
import { startPlugin } from "../cli/wasm-host.ts";
import { pinThisThread } from "./placement.ts";
import { runTestCase, type TestCase } from "./preflight-cases.ts";

export interface PreflightJob {
  wasm: Uint8Array;
  rootId: string;
  /** The plugin configuration Envoy would hand onConfigure ("" when it gets none). */
  configuration: string;
  /** filter.test.json cases, run after the start; a case without its own configuration gets filter.json's. */
  cases?: { defaultConfiguration: string; list: TestCase[] };
}

export type PreflightRequest = { id: number; job: PreflightJob };

export type PreflightMessage =
  | { type: "ready" }
  | { type: "result"; id: number; ok: true; unsupported: string[] }
  | { type: "result"; id: number; ok: false; error: string };

const port = parentPort;
if (!port) throw new Error("preflight-worker.ts must run in a worker thread");
// CP_BUILD_CPUS: the module's start and test cases run on the build CPUs too (milliseconds of
// work, so this thread is pinned rather than moved to a process; see placement.ts).
const unpinned = pinThisThread();
if (unpinned) process.stderr.write(`pre-flight worker not pinned to the build CPUs: ${unpinned}\n`);
const send = (m: PreflightMessage) => port.postMessage(m);

async function run(job: PreflightJob): Promise<{ ok: true; unsupported: string[] } | { ok: false; error: string }> {
  try {
    const outcome = await startPlugin(job.wasm, { rootId: job.rootId, configuration: job.configuration });
    for (const tc of job.cases?.list ?? []) {
      const result = await runTestCase(job.wasm, job.rootId, job.cases?.defaultConfiguration ?? "", tc);
      if (!result.ok) return { ok: false, error: `filter.test.json case ${JSON.stringify(tc.name)} failed: ${result.problems.join("; ")}` };
    }
    return { ok: true, unsupported: outcome.unsupported };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

port.on("message", (req: PreflightRequest) => {
  void run(req.job).then((r) => send({ type: "result", id: req.id, ...r }));
});
// The parent's clock for a job starts when it is handed over, after this (tsx, the host) loaded.
send({ type: "ready" });
