import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { EventBus } from "../../../controlplane/events/bus.ts";
import { HealthMonitor } from "../../../controlplane/health/monitor.ts";
import { effectiveFilters } from "../../../controlplane/registry/effective.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";

function build(registry: FilterRegistry, name: string, marker: string): string {
  const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  registry.buildSucceeded(name, bytes, { sha256, rootId: name, buildMs: 1 }, {});
  return sha256;
}

const node = { id: "envoy-1", cluster: "edge" };
const quietLog = { warn: () => undefined, error: () => undefined };

describe("HealthMonitor", () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-health-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(threshold = 3) {
    const registry = new FilterRegistry();
    const file = path.join(dir, `state-${n++}.json`);
    const state = new OperatorState(file);
    await state.load();
    const events = new EventBus();
    const warnings: object[] = [];
    const monitor = new HealthMonitor({ registry, state, events, log: { ...quietLog, warn: (o) => warnings.push(o) } }, { threshold, windowMs: 60_000, settleMs: 1000 });
    return { registry, state, events, monitor, file, warnings };
  }

  test("a stuck worker is an alert only: event, error log, reporter record; no state change", async () => {
    const registry = new FilterRegistry();
    const state = new OperatorState(path.join(dir, `state-${n++}.json`));
    await state.load();
    const events = new EventBus();
    const errors: object[] = [];
    const monitor = new HealthMonitor({ registry, state, events, log: { ...quietLog, error: (o) => errors.push(o) } }, { threshold: 3, windowMs: 60_000 });
    build(registry, "spin", "v1");
    monitor.opened(node, "ipv4:127.0.0.1:1");
    const at = Date.now();
    monitor.heard(node, at);
    await monitor.report({ node, failures: new Map(), stuckWorkers: new Map([["worker_0", 1]]), at });
    const [reporter] = monitor.statsReporters();
    assert.equal(reporter?.lastStatsAt, new Date(at).toISOString());
    assert.deepEqual(reporter?.stuckWorkers, [{ worker: "worker_0", megaMisses: 1, lastAt: new Date(at).toISOString() }]);
    const stuck = events.since().filter((e) => e.type === "health.stuck");
    assert.equal(stuck.length, 1);
    assert.deepEqual(stuck[0]?.type === "health.stuck" ? [stuck[0].signal, stuck[0].worker, stuck[0].filters] : [], ["watchdog", "worker_0", ["spin"]]);
    assert.equal(errors.length, 1);
    assert.deepEqual(state.choice("spin"), {}, "disabling cannot reach a stuck worker: nothing is changed");
  });

  test("stats that stop flushing on an open stream raise one stuck alert per episode", async () => {
    const registry = new FilterRegistry();
    const state = new OperatorState(path.join(dir, `state-${n++}.json`));
    await state.load();
    const events = new EventBus();
    const monitor = new HealthMonitor({ registry, state, events, log: quietLog }, { threshold: 3, windowMs: 60_000 });
    build(registry, "spin", "v1");
    monitor.opened(node, "ipv4:127.0.0.1:1");
    const t = 1_000_000;
    for (const dt of [0, 1000, 2000]) monitor.heard(node, t + dt);
    const stuck = () => events.since().filter((e) => e.type === "health.stuck");
    monitor.checkStalls(t + 2000 + 3900);
    assert.equal(stuck().length, 0, "4 missed 1 s flushes and at least 4 s: not yet");
    monitor.checkStalls(t + 2000 + 4100);
    assert.equal(stuck().length, 1);
    const e = stuck()[0];
    assert.deepEqual(e?.type === "health.stuck" ? [e.signal, e.silentMs, e.filters] : [], ["stats_stalled", 4100, ["spin"]]);
    assert.equal(monitor.statsReporters()[0]?.statsStalledSince, new Date(t + 2000).toISOString());
    monitor.checkStalls(t + 2000 + 9000);
    assert.equal(stuck().length, 1, "one alert per episode");
    monitor.heard(node, t + 20_000);
    assert.equal(monitor.statsReporters()[0]?.statsStalledSince, null, "flushing again clears it");
    monitor.heard(node, t + 21_000);
    monitor.checkStalls(t + 21_000 + 4100);
    assert.equal(stuck().length, 2, "a new episode alerts again; the stall was not taken as the flush interval");
  });

  test("a filter with one module is disabled after N failures, through persisted operator state", async () => {
    const { registry, state, events, monitor, file, warnings } = await setup();
    build(registry, "f", "v1");
    const t0 = Date.now() + 10; // after the build
    await monitor.report({ node, failures: new Map([["f", 2]]), at: t0 });
    assert.equal(state.choice("f").enabled, undefined, "below the threshold nothing happens");
    assert.equal(monitor.health("f").runtimeFailures, 2);
    await monitor.report({ node, failures: new Map([["f", 1]]), at: t0 + 100 });
    assert.equal(state.choice("f").enabled, false);
    assert.equal(JSON.parse(await readFile(file, "utf8")).filters.f.enabled, false, "persisted");
    const h = monitor.health("f");
    assert.equal(h.action, "disabled");
    assert.equal(h.runtimeFailures, 3);
    assert.match(h.reason ?? "", /3 runtime failure\(s\) within 60 s; no older good module to roll back to: disabled f/);
    assert.equal(h.lastFailureAt, new Date(t0 + 100).toISOString());
    const types = events.since().map((e) => e.type);
    assert.deepEqual(types, ["health.failures", "health.failures", "state.changed", "health.action"]);
    assert.equal(warnings.length, 1, "one warn log line");
  });

  test("a filter whose newest module fails is rolled back to the previous one", async () => {
    const { registry, state, events, monitor } = await setup();
    const v1 = build(registry, "f", "v1");
    const v2 = build(registry, "f", "v2");
    await monitor.report({ node, failures: new Map([["f", 3]]), at: Date.now() + 10 });
    assert.equal(state.choice("f").pinnedSha256, v1);
    assert.equal(effectiveFilters(registry, state)[0]?.sha256, v1, "Envoy is now told to run v1");
    assert.notEqual(v1, v2);
    const action = events.since().find((e) => e.type === "health.action");
    assert.equal(action?.type === "health.action" ? action.sha256 : undefined, v1);
    assert.equal(monitor.health("f").action, "rolled_back");
  });

  test("failures just after an action are not counted towards the next one", async () => {
    const { registry, state, monitor } = await setup(2);
    const v1 = build(registry, "f", "v1");
    build(registry, "f", "v2");
    const t0 = Date.now() + 10;
    await monitor.report({ node, failures: new Map([["f", 2]]), at: t0 });
    assert.equal(state.choice("f").pinnedSha256, v1);
    // Stragglers from the old module in the next flush.
    await monitor.report({ node, failures: new Map([["f", 5]]), at: Date.now() + 100 });
    assert.equal(state.choice("f").enabled, undefined, "not disabled by stragglers");
    // The pinned module fails too, later.
    await monitor.report({ node, failures: new Map([["f", 2]]), at: Date.now() + 2000 });
    assert.equal(state.choice("f").enabled, false);
    assert.match(monitor.health("f").reason ?? "", /pinned module .* fails too/);
  });

  test("plugins the control plane does not know are ignored; threshold 0 records but never acts", async () => {
    const { registry, state, monitor, events } = await setup(0);
    build(registry, "f", "v1");
    await monitor.report({ node, failures: new Map([["other", 50], ["f", 50]]), at: Date.now() + 10 });
    assert.equal(state.choice("f").enabled, undefined);
    assert.equal(monitor.health("f").runtimeFailures, 50);
    assert.equal(monitor.health("other").runtimeFailures, 0);
    assert.deepEqual(events.since().map((e) => e.type), ["health.failures"]);
  });

  test("stats reporters are listed while their stream is open", async () => {
    const { monitor } = await setup();
    monitor.opened(node, "127.0.0.1:1");
    monitor.opened(node, "127.0.0.1:2");
    monitor.closed(node);
    assert.deepEqual(monitor.statsReporters().map((r) => r.node), ["envoy-1"]);
    monitor.closed(node);
    assert.deepEqual(monitor.statsReporters(), []);
  });

  test("dropped stats are counted with the last one's node and peer, and change nothing else", async () => {
    const { monitor, events } = await setup();
    assert.deepEqual(monitor.droppedStats(), { reports: 0, last: null });
    const at = Date.now();
    monitor.dropped(node, "127.0.0.1:5", at - 1);
    monitor.dropped({ id: "envoy-2", cluster: "edge" }, "127.0.0.1:6", at);
    assert.deepEqual(monitor.droppedStats(), { reports: 2, last: { node: "envoy-2", cluster: "edge", peer: "127.0.0.1:6", at: new Date(at).toISOString() } });
    assert.deepEqual(monitor.statsReporters(), [], "a dropped stream is no reporter");
    assert.deepEqual(events.since(), [], "no event");
  });
});
