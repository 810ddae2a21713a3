// Isolation against the real Envoy: each misbehaving fixture (test/fixtures/filters/) and each
// bad module runs beside the good add-header filter, through the same harness as
// `npm run isolation` (bench/lib/isolation/). Asserts what must hold -- Envoy stays up, the
// good filter keeps working where Envoy lets it, bad modules are refused before a push, a
// recovery path exists -- never how fast. The spin case is bounded: a 2 s window, then the
// harness kills and restarts Envoy.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ScenarioContext } from "../../bench/lib/isolation/context.ts";
import { watchNacks, type NackWatch } from "../../bench/lib/isolation/nack-watch.ts";
import { runScenarios } from "../../bench/lib/isolation/run.ts";
import { startIsolationStack, type IsolationStack } from "../../bench/lib/isolation/stack.ts";
import type { FailPolicy, ScenarioResult } from "../../bench/lib/isolation/types.ts";
import { makeWorkDir } from "../support/paths.ts";

describe("isolation: misbehaving filters beside a good one, real Envoy", { timeout: 240_000 }, () => {
  let stack: IsolationStack;
  let nacks: NackWatch;
  let ctx: ScenarioContext;
  let policies: FailPolicy[];

  const run = async (id: string, only: FailPolicy[] = policies): Promise<ScenarioResult[]> => {
    const rows = await runScenarios(ctx, { only: [id], policies: only });
    for (const r of rows) assert.equal(r.harnessError, undefined, `${r.scenario} (${r.failPolicy}) ran to the end:\n${r.harnessError}`);
    return rows;
  };
  const says = (r: ScenarioResult): string => JSON.stringify(r, null, 1);
  const row = (rows: ScenarioResult[], policy: FailPolicy): ScenarioResult => {
    const r = rows.find((x) => x.failPolicy === policy);
    assert.ok(r, `a row for ${policy}`);
    return r;
  };

  before(async () => {
    stack = await startIsolationStack({ workDir: makeWorkDir("isolation") });
    nacks = await watchNacks(stack.cp.adminUrl);
    ctx = new ScenarioContext(stack, nacks, { spinWindowMs: 2_000, waitMs: 20_000 });
    policies = await ctx.api.failPolicies();
  });

  after(async () => {
    nacks?.close();
    await stack?.close();
  });

  it("a filter that aborts in onRequestHeaders: Envoy stays up, no NACK, 503 (closed) or skipped (open) until disabled", async () => {
    const rows = await run("abort-request");
    for (const r of rows) {
      assert.ok(r.envoyAlive, `Envoy alive and LIVE: ${says(r)}`);
      assert.match(r.controlPlane, /runtime failure only/, "a runtime failure is not a NACK");
      assert.notEqual(r.recovery.ms, null, `traffic healthy again after the recovery step: ${says(r)}`);
      assert.ok(r.goodFilterUnaffected, `add-header works: ${says(r)}`);
    }
    const closed = row(rows, "closed");
    assert.equal(closed.triggered[0], 503);
    assert.ok(closed.other.every((o) => o === 503), `fail-closed: the poisoned VM answers 503 to every request: ${says(closed)}`);
    const open = row(rows, "open");
    assert.ok(open.other.every((o) => o === 200), `fail-open: the failed filter is skipped: ${says(open)}`);
  });

  it("under FAIL_RELOAD, a filter that keeps failing is switched off by the control plane from Envoy's stats", async (t) => {
    if (!policies.includes("reload")) return t.skip("this control plane offers no FAIL_RELOAD");
    const [r] = await run("auto-disable");
    assert.ok(r);
    assert.ok(r.envoyAlive, says(r));
    assert.match(r.controlPlane, /automatically$/, `the control plane acted on its own: ${says(r)}`);
    assert.notEqual(r.recovery.ms, null, says(r));
    assert.ok(r.goodFilterUnaffected, says(r));
  });

  it("a host call the manifest did not declare is refused by Envoy, and allowed once declared", async () => {
    const rows = await run("capability");
    const [denied, granted] = rows;
    assert.ok(denied && granted);
    assert.ok(denied.notes.includes("x-probe-http-call on the responses: 10"), `denied: InternalFailure: ${says(denied)}`);
    assert.ok(granted.notes.includes("x-probe-http-call on the responses: 0"), `granted: Ok: ${says(granted)}`);
    for (const r of rows) assert.ok(r.envoyAlive && r.goodFilterUnaffected && r.other.every((o) => o === 200), says(r));
  });

  it("a configuration that makes onConfigure trap is refused before push: a 400, Envoy never receives it, requests are served", async () => {
    const [r] = await run("abort-configure", ["closed"]);
    assert.ok(r);
    assert.ok(r.envoyAlive, says(r));
    assert.match(r.controlPlane, /^refused before push \(400\): proxy_on_configure trapped: the module exited/, says(r));
    assert.ok(r.notes.some((n) => /^PUT configuration "bad": 400 .*abort-configure: refusing configuration "bad"/s.test(n)),
      `the trap message: ${says(r)}`);
    assert.ok(r.notes.some((n) => /^ECDS afterwards: unchanged/.test(n)), `no new ECDS version: ${says(r)}`);
    assert.ok(r.notes.includes('Envoy\'s ECDS config holds configuration "bad": no'), says(r));
    assert.ok(r.notes.includes("configuration in the API afterwards: null"), `nothing saved: ${says(r)}`);
    assert.ok(r.other.length === 5 && r.other.every((o) => o === 200), `requests keep being served: ${says(r)}`);
    assert.ok(r.notes.some((n) => / ran on 5\/5 requests/.test(n)), `the filter keeps running with its good configuration: ${says(r)}`);
    assert.ok(r.notes.includes("an unrelated new filter (listener change) afterwards: ACKed"), says(r));
    assert.ok(r.goodFilterUnaffected, says(r));
  });

  it("a new filter whose first configuration makes onConfigure trap is refused before push: a build error, never in Envoy", async () => {
    const [r] = await run("abort-at-start");
    assert.ok(r);
    assert.ok(r.envoyAlive, says(r));
    assert.match(r.controlPlane, /^refused before push \(build error in the API\): proxy_on_configure trapped: the module exited/, says(r));
    const built = /^build: error abort-at-start-\d+: refused before push: .*configuration "bad".*refusing configuration/s;
    assert.ok(r.notes.some((n) => built.test(n)), says(r));
    assert.ok(r.notes.some((n) => /^ECDS: no resource for it; version unchanged; Envoy's ECDS config names it: no$/.test(n)), says(r));
    assert.ok(r.other.length === 5 && r.other.every((o) => o === 200), `requests keep being served: ${says(r)}`);
    assert.ok(r.notes.includes("an unrelated new filter (listener change) meanwhile: ACKed"), says(r));
    assert.ok(r.goodFilterUnaffected, says(r));
  });

  it("a filter that grows memory without bound: the VM traps at its limit, Envoy stays up", async () => {
    const rows = await run("memory-grow", ["closed"]);
    const r = row(rows, "closed");
    assert.ok(r.envoyAlive, says(r));
    assert.equal(r.triggered[0], 503, `the growing request fails, it does not hang: ${says(r)}`);
    assert.notEqual(r.recovery.ms, null);
    assert.ok(r.goodFilterUnaffected, says(r));
  });

  it("a filter that spins: Envoy's admin stays LIVE but the worker is lost until Envoy is restarted", async () => {
    const [r] = await run("spin");
    assert.ok(r);
    assert.ok(r.envoyAlive, `process alive and admin /ready LIVE during the spin: ${says(r)}`);
    assert.match(r.readyDuring, /LIVE/);
    assert.ok(r.other.length > 0 && r.other.every((o) => o === "timeout"), `ordinary requests on the stuck worker get no answer: ${says(r)}`);
    assert.match(r.controlPlane, /stats stream went silent -> stuck-worker alert/, `the control plane alerts: ${says(r)}`);
    assert.notEqual(r.recovery.ms, null, `a restarted Envoy serves again: ${says(r)}`);
    assert.ok(stack.envoy.running);
  });

  it("with Envoy's worker watchdog kill_timeout, a spin aborts the whole Envoy; restarted, it serves again", async () => {
    const [r] = await run("spin-watchdog");
    assert.ok(r);
    assert.equal(r.envoyAlive, false, `the watchdog aborted Envoy: ${says(r)}`);
    assert.ok(r.notes.some((n) => /died on SIGABRT/.test(n)), says(r));
    assert.notEqual(r.recovery.ms, null, says(r));
    assert.ok(stack.envoy.running);
  });

  it("bad modules are refused by the control plane before a push; the last good module keeps serving", async () => {
    const rows = await run("module-refused");
    assert.deepEqual(rows.map((r) => r.scenario), ["not-valid-wasm", "wrong-abi-export", "unknown-import", "no-abi-export-source"]);
    for (const r of rows) {
      assert.match(r.controlPlane, /^(refused \(400\): |build error in the API: )\S/, says(r));
      assert.equal(r.recovery.action, "none needed (last good module kept)", says(r));
      assert.ok(r.goodFilterUnaffected && r.envoyAlive, says(r));
    }
  });

  it("a module whose bytes do not match the announced sha256: Envoy refuses the code and stays up; an update is NACKed and the old module keeps serving", async () => {
    const [fresh] = await run("sha-new");
    assert.ok(fresh);
    assert.ok(fresh.envoyAlive, says(fresh));
    assert.ok(fresh.other.every((o) => o === 503), `fail-closed filter without code answers 503: ${says(fresh)}`);
    assert.ok(fresh.notes.some((n) => /Envoy counted the failed fetch/.test(n)), `Envoy counted the failed fetch: ${says(fresh)}`);
    assert.notEqual(fresh.recovery.ms, null);
    const updates = await run("sha-update", ["closed"]);
    const u = row(updates, "closed");
    assert.ok(u.envoyAlive, says(u));
    assert.ok(u.notes.some((n) => /Envoy counted the failed fetch/.test(n)), says(u));
    // The re-send after the fetch keeps nack_on_code_cache_miss: the failed fetch is a NACK the
    // control plane records, and Envoy keeps running the previous module.
    assert.match(u.controlPlane, /^NACK \(TypedExtensionConfig\)/, says(u));
    assert.ok(u.other.every((o) => o === 200), `the old module keeps serving: ${says(u)}`);
    assert.ok(u.goodFilterUnaffected, says(u));
    assert.notEqual(u.recovery.ms, null, `rollback to the previous module brings the filter back: ${says(u)}`);
  });
});
