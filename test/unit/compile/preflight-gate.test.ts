// The pre-flight gate's logic: which (module, root id, configuration) an operator change or a
// build makes Envoy run, what is started for it, what is remembered, and that a refusal changes
// nothing. The pre-flight itself is replaced by a recording function here (it has its own tests
// in preflight.test.ts and the e2e test preflight-push.test.ts runs the real one).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { BuildResult } from "../../../controlplane/compile/builder.ts";
import {
  applyChoice, configurationOf, PassedSet, pluginOf, pluginsToCheck, PreflightGate, refusal, samePlugin, verdictKey, type Plugin,
} from "../../../controlplane/compile/preflight-gate.ts";
import type { PreflightOptions, PreflightResult } from "../../../controlplane/compile/preflight.ts";
import { FilterRegistry, type GoodModule } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";

const sha = (marker: string) => createHash("sha256").update(marker).digest("hex");
const good = (marker: string, rootId = "root"): GoodModule => ({
  sha256: sha(marker), rootId, size: 1, builtAt: "2026-01-01T00:00:00.000Z", buildMs: 1, source: "build",
});

describe("pure parts", () => {
  test("configurationOf: the operator's wins over the manifest's; none is an empty string", () => {
    assert.equal(configurationOf({ configuration: "op" }, { configuration: "manifest" }), "op");
    assert.equal(configurationOf({ configuration: "" }, { configuration: "manifest" }), "", "an empty operator configuration is a choice");
    assert.equal(configurationOf({}, { configuration: "manifest" }), "manifest");
    assert.equal(configurationOf({}, {}), "");
  });

  test("applyChoice sets fields and clears the ones given as undefined", () => {
    assert.deepEqual(applyChoice({ configuration: "a", enabled: false }, { configuration: undefined }), { enabled: false });
    assert.deepEqual(applyChoice({}, { pinnedSha256: "x" }), { pinnedSha256: "x" });
  });

  test("pluginOf: the pinned module while retained, else the newest; nothing without a module", () => {
    const old = good("old", "r-old");
    const newest = good("new", "r-new");
    const entry = { module: newest, defaults: { configuration: "m" } };
    assert.deepEqual(pluginOf(entry, [old, newest], {}), { sha256: newest.sha256, rootId: "r-new", configuration: "m" });
    assert.deepEqual(pluginOf(entry, [old, newest], { pinnedSha256: old.sha256, configuration: "c" }),
      { sha256: old.sha256, rootId: "r-old", configuration: "c" });
    assert.equal(pluginOf(entry, [newest], { pinnedSha256: old.sha256 })?.sha256, newest.sha256, "an evicted pin is moot");
    assert.equal(pluginOf({ defaults: {} }, [], {}), undefined);
    assert.equal(pluginOf(undefined, [], {}), undefined);
  });

  test("pluginsToCheck: only what Envoy would newly run, plus a passed build not yet committed", () => {
    const a: Plugin = { sha256: sha("a"), rootId: "r", configuration: "x" };
    const b: Plugin = { ...a, configuration: "y" };
    assert.deepEqual(pluginsToCheck(a, { ...a }, undefined), [], "unchanged: nothing to start");
    assert.deepEqual(pluginsToCheck(a, b), [b]);
    assert.deepEqual(pluginsToCheck(undefined, a), [a], "a first module");
    assert.deepEqual(pluginsToCheck(a, undefined), [], "no module: nothing reaches Envoy");
    const pending = { sha256: sha("p"), rootId: "r2" };
    assert.deepEqual(pluginsToCheck(a, b, pending), [b, { ...pending, configuration: "y" }]);
    assert.deepEqual(pluginsToCheck(a, a, pending), [{ ...pending, configuration: "x" }],
      "the pending module with the configuration it will get");
    assert.deepEqual(pluginsToCheck(a, b, { sha256: a.sha256, rootId: "r" }), [b], "pending is the one checked already");
    assert.equal(samePlugin(undefined, undefined), false);
  });

  test("verdictKey differs in every part: module, root id, configuration, cases", () => {
    const p: Plugin = { sha256: sha("a"), rootId: "r", configuration: "x" };
    const keys = new Set([
      verdictKey(p), verdictKey({ ...p, sha256: sha("b") }), verdictKey({ ...p, rootId: "s" }), verdictKey({ ...p, configuration: "" }),
      verdictKey(p, { defaultConfiguration: "", list: [{ name: "c" }] }),
      verdictKey(p, { defaultConfiguration: "d", list: [{ name: "c" }] }),
    ]);
    assert.equal(keys.size, 6);
    assert.equal(verdictKey(p), verdictKey({ ...p }));
  });

  test("refusal names the filter, the module, root id and configuration, then the module's reason", () => {
    const p: Plugin = { sha256: sha("a"), rootId: "r", configuration: "bad" };
    assert.equal(refusal("f", p, "proxy_on_configure trapped: unreachable"),
      `f: refused before push: module ${p.sha256.slice(0, 12)} (root id "r") started as Envoy would run it, ` +
      'with configuration "bad": proxy_on_configure trapped: unreachable');
    assert.match(refusal("f", { ...p, configuration: "" }, "x"), /with no configuration: x$/);
    assert.match(refusal("f", { ...p, configuration: "y".repeat(500) }, "x"), /configuration "y{100,}…: x$/,
      "a long configuration is clipped");
    assert.equal(refusal("f", p, 'filter.test.json case "c" failed: nope'),
      'f: refused before push: filter.test.json case "c" failed: nope');
  });

  test("PassedSet forgets the least recently used key beyond its limit", () => {
    const s = new PassedSet(2);
    s.add("a");
    s.add("b");
    assert.equal(s.has("a"), true); // a is now the most recent
    s.add("c");
    assert.deepEqual([s.has("a"), s.has("b"), s.has("c"), s.size], [true, false, true, 2]);
  });
});

describe("PreflightGate", () => {
  let dir: string;
  let seq = 0;
  let registry: FilterRegistry;
  let state: OperatorState;
  let calls: { rootId: string; configuration: string; cases: number }[];
  /** Verdict of the fake pre-flight: refuses any configuration containing "bad". */
  let respond: (opts: PreflightOptions) => Promise<PreflightResult>;
  let gate: PreflightGate;

  const fakePreflight = (_wasm: Uint8Array, opts: PreflightOptions): Promise<PreflightResult> => {
    calls.push({ rootId: opts.rootId, configuration: opts.configuration ?? "", cases: opts.cases?.list.length ?? 0 });
    return respond(opts);
  };
  const commit = (name: string, marker: string, defaults: { configuration?: string } = {}) => {
    const bytes = Buffer.from(marker);
    registry.buildSucceeded(name, bytes, { sha256: sha(marker), rootId: `${name}-root`, buildMs: 1 }, defaults);
    return sha(marker);
  };
  const built = (name: string, marker: string, configuration?: string): Extract<BuildResult, { ok: true }> => ({
    ok: true, name, wasm: Buffer.from(marker), sha256: sha(marker), rootId: `${name}-root`, buildMs: 1, warnings: [],
    manifest: configuration === undefined ? {} : { configuration },
  });
  const configure = (name: string, configuration: string | undefined) =>
    gate.change(name, { configuration }, async () => {
      await state.update(name, { configuration });
      return "applied";
    });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-gate-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    registry = new FilterRegistry();
    state = new OperatorState(path.join(dir, `state-${++seq}.json`));
    await state.load();
    calls = [];
    respond = async (opts) => ((opts.configuration ?? "").includes("bad")
      ? { ok: false, error: "proxy_on_configure trapped: unreachable" }
      : { ok: true, unsupported: [] });
    gate = new PreflightGate(registry, state, fakePreflight, async () => undefined);
  });

  test("a configuration change starts the running module with it; refused: not applied, state unchanged", async () => {
    const s = commit("f", "v1", { configuration: "m" });
    assert.deepEqual(await configure("f", "good"), { ok: true, value: "applied" });
    assert.deepEqual(calls, [{ rootId: "f-root", configuration: "good", cases: 0 }]);
    const refused = await configure("f", "bad");
    assert.equal(refused.ok, false);
    assert.match(refused.ok ? "" : refused.error,
      new RegExp(`^f: refused before push: module ${s.slice(0, 12)} .*configuration "bad": proxy_on_configure trapped`));
    assert.equal(state.choice("f").configuration, "good", "nothing saved");
  });

  test("what passed is remembered; an unchanged pair starts nothing", async () => {
    commit("f", "v1", { configuration: "m" });
    await configure("f", "x");
    await configure("f", "m"); // back to the manifest's: a new pair
    await configure("f", "x"); // passed before
    await configure("f", "x"); // unchanged
    assert.deepEqual(calls.map((c) => c.configuration), ["x", "m"]);
  });

  test("back to the manifest's configuration (DELETE) is checked with the manifest's", async () => {
    commit("f", "v1", { configuration: "bad-manifest" });
    assert.equal((await configure("f", "ok")).ok, true);
    const back = await configure("f", undefined);
    assert.equal(back.ok, false, "the manifest's configuration is what Envoy would get");
    assert.deepEqual(calls.at(-1), { rootId: "f-root", configuration: "bad-manifest", cases: 0 });
  });

  test("a rollback pin starts the older module with the current configuration", async () => {
    const old = commit("f", "v1");
    commit("f", "v2");
    await state.update("f", { configuration: "c" });
    const pinned = await gate.change("f", { pinnedSha256: old }, async () => state.update("f", { pinnedSha256: old }));
    assert.equal(pinned.ok, true);
    assert.deepEqual(calls, [{ rootId: "f-root", configuration: "c", cases: 0 }]);
  });

  test("a filter without a module: nothing to start, the change applies (the build will be checked)", async () => {
    registry.buildFailed("f", "f: does not compile");
    assert.deepEqual(await configure("f", "bad"), { ok: true, value: "applied" });
    assert.deepEqual(calls, []);
  });

  test("a build is checked with the operator's configuration over its manifest's, and its cases", async () => {
    const casesDir = path.join(dir, `filters-${seq}`);
    fs.mkdirSync(path.join(casesDir, "f"), { recursive: true });
    fs.writeFileSync(path.join(casesDir, "f", "filter.test.json"), JSON.stringify({ cases: [{ name: "one" }, { name: "two" }] }));
    const real = new PreflightGate(registry, state, fakePreflight);
    assert.equal(await real.checkBuild(built("f", "v1", "m"), { filtersDir: casesDir }), undefined);
    await state.update("f", { configuration: "bad" });
    const refused = await real.checkBuild(built("f", "v2", "m"), { filtersDir: casesDir });
    assert.match(refused ?? "", /^f: refused before push: .*configuration "bad": proxy_on_configure trapped: unreachable$/);
    assert.deepEqual(calls, [{ rootId: "f-root", configuration: "m", cases: 2 }, { rootId: "f-root", configuration: "bad", cases: 2 }]);
  });

  test("a filter.test.json that cannot be read as cases refuses the build with the file's problem", async () => {
    const casesDir = path.join(dir, `filters-${seq}`);
    fs.mkdirSync(path.join(casesDir, "f"), { recursive: true });
    fs.writeFileSync(path.join(casesDir, "f", "filter.test.json"), "{ nope");
    const real = new PreflightGate(registry, state, fakePreflight);
    assert.match(await real.checkBuild(built("f", "v1"), { filtersDir: casesDir }) ?? "",
      /^f: refused before push: .*filter\.test\.json: invalid JSON/);
    assert.deepEqual(calls, [], "nothing started");
  });

  test("a build that passed but is not committed yet is checked by a configuration change too", async () => {
    commit("f", "v1");
    assert.equal(await gate.checkBuild(built("f", "v2"), { filtersDir: dir }), undefined);
    calls = [];
    // v2 passed with "" and is being stored; meanwhile a configuration change: both modules get it.
    assert.equal((await configure("f", "c")).ok, true);
    assert.equal(calls.length, 2);
    // Committed: v2 is the running module, no longer pending.
    commit("f", "v2");
    calls = [];
    await configure("f", "d");
    assert.equal(calls.length, 1);
  });

  test("a build and a configuration change of one filter are checked one after the other", async () => {
    commit("f", "v1");
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    respond = async (opts) => {
      order.push(`start ${opts.configuration}`);
      if (opts.configuration === "") await held;
      order.push(`end ${opts.configuration}`);
      return { ok: true, unsupported: [] };
    };
    const build = gate.checkBuild(built("f", "v2"), { filtersDir: dir });
    const change = configure("f", "c");
    // The build's pre-flight is held; the change must wait for it, not start alongside.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ["start "]);
    release();
    await Promise.all([build, change]);
    assert.deepEqual(order, ["start ", "end ", "start c", "end c", "start c", "end c"], "v1 with c, then the pending v2 with c");
  });
});
