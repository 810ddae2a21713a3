// The peer comparison's pure parts (bench/support/peer-stats.ts, peer-resources.ts): latency
// summaries, ours/go ratios per round and their medians, idle detection on CPU readings, and the
// resource export the go-control-plane peer serves.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CHANGING_FILTER, FILTER_NAMES } from "../../../bench/support/fanout-resources.ts";
import { exportGenerations, ourAckKeys } from "../../../bench/support/peer-resources.ts";
import {
  idleIndex, laterView, latencySummary, medianFigures, pairRounds, ratio, summarize, type Measurement,
} from "../../../bench/support/peer-stats.ts";
import { decodeMessage } from "../../../controlplane/xds/codec.ts";
import { EXTENSION_CONFIG } from "../../../controlplane/xds/type-urls.ts";

const m = (server: "ours" | "go", round: number, allAcked: number, cpuS: number, status: "ok" | "failed" = "ok"): Measurement =>
  ({ server, variant: "sotw", n: 1000, round, status, p50: allAcked / 2, p99: allAcked, allAcked, cpuS,
    kibPerIdleStream: 30, clientElu: [0.5, 0.6] });

describe("peer comparison maths", () => {
  test("latencies are ACK time minus publish time, nearest-rank percentiles", () => {
    const ackedAt = Array.from({ length: 100 }, (_, i) => 1000 + i + 1); // 1..100 ms after publish
    assert.deepEqual(latencySummary(ackedAt.reverse(), 1000), { p50: 50, p99: 99, allAcked: 100 });
    assert.throws(() => latencySummary([], 0), /no ACKs/);
  });

  test("ratio is ours / go and undefined where go has nothing to divide by", () => {
    assert.equal(ratio(300, 100), 3);
    assert.ok(Number.isNaN(ratio(1, 0)));
    assert.ok(Number.isNaN(ratio(undefined, 2)));
  });

  test("rounds pair by variant, N and round; the median ratio is the median of per-round ratios", () => {
    const pairs = pairRounds([
      m("ours", 1, 400, 2), m("go", 1, 100, 1), m("ours", 2, 300, 2), m("go", 2, 300, 0.5), m("ours", 3, 500, 3), m("go", 3, 250, 1),
    ]);
    assert.deepEqual(pairs.map((p) => p.ratios.allAcked), [4, 1, 2]);
    const [s] = summarize(pairs);
    assert.equal(s!.rounds, 3);
    assert.equal(s!.ours.allAcked, 400);
    assert.equal(s!.go.allAcked, 250);
    // Not 400 / 250: each round's ratio, then their median.
    assert.equal(s!.medianRatio.allAcked, 2);
    assert.equal(s!.medianRatio.cpuS, 3);
    assert.equal(s!.maxClientElu.go, 0.6);
  });

  test("a failed measurement leaves its round's ratio undefined and stays out of the medians", () => {
    const pairs = pairRounds([m("ours", 1, 400, 2), m("go", 1, 100, 1, "failed"), m("ours", 2, 300, 2), m("go", 2, 150, 1)]);
    assert.ok(Number.isNaN(pairs[0]!.ratios.allAcked));
    const [s] = summarize(pairs);
    assert.equal(s!.go.allAcked, 150);
    assert.equal(s!.medianRatio.allAcked, 2);
  });

  test("idle is the first reading followed by two flat intervals (one clock tick of slack)", () => {
    assert.equal(idleIndex([0, 100, 250, 260, 260]), 2);
    assert.equal(idleIndex([0, 100, 250, 270, 280]), -1);
    assert.equal(idleIndex([5]), -1);
  });
});

describe("later changes", () => {
  test("each figure is its median over the later changes, per worker for the client arrays", () => {
    const f = medianFigures([
      { p50: 10, p99: 30, allAcked: 31, cpuS: 0.2, clientElu: [0.1, 0.9] },
      { p50: 20, p99: 10, allAcked: 11, cpuS: 0.4, clientElu: [0.3, 0.5] },
      { p50: 30, p99: 20, allAcked: 21, cpuS: 0.3, clientElu: [0.2, 0.7] },
    ]);
    assert.deepEqual([f.p50, f.p99, f.allAcked, f.cpuS], [20, 20, 21, 0.3]);
    assert.deepEqual(f.clientElu, [0.2, 0.7]);
  });

  test("the later view replaces the change figures, keeps the rest, and is absent without later changes", () => {
    const first = m("ours", 1, 200, 0.5);
    assert.equal(laterView(first), undefined);
    const withLater: Measurement = { ...first, later: { p50: 40, p99: 80, allAcked: 90, cpuS: 0.1, changes: 3 } };
    const view = laterView(withLater)!;
    assert.deepEqual([view.allAcked, view.cpuS, view.kibPerIdleStream, view.round], [90, 0.1, 30, 1]);
    assert.equal(view.later, undefined);
    // A failed measurement stays in the later tables as a failure, not silently dropped.
    assert.equal(laterView(m("go", 1, 0, 0, "failed"))?.status, "failed");
  });
});

describe("peer resource export", () => {
  test("two generations differ only in the changing filter, with our type versions and decodable bytes", () => {
    const { generations } = exportGenerations(2);
    assert.equal(generations.length, 2);
    const ecds = generations.map((g) => g.types.find((t) => t.typeUrl === EXTENSION_CONFIG)!);
    assert.deepEqual(ecds[0]!.resources.map((r) => r.name), [...FILTER_NAMES].sort());
    assert.notEqual(ecds[0]!.version, ecds[1]!.version);
    for (const name of FILTER_NAMES) {
      const [a, b] = ecds.map((t) => t.resources.find((r) => r.name === name)!.value);
      assert.equal(a !== b, name === CHANGING_FILTER, name);
    }
    const keys = ourAckKeys(1, CHANGING_FILTER);
    assert.equal(keys.sotw, ecds[1]!.version);
    // The canonical copy: no node id in the module URL.
    const decoded = JSON.stringify(decodeMessage(EXTENSION_CONFIG, Buffer.from(ecds[1]!.resources[0]!.value, "base64")));
    assert.match(decoded, /\/modules\/[0-9a-f]{64}\.wasm"/);
    // Samples of our per-Envoy copies, for the per-node peer to check its rendering against.
    const { ecdsSamples } = exportGenerations(1);
    assert.equal(ecdsSamples.length, FILTER_NAMES.length * 2);
    const sample = JSON.stringify(decodeMessage(EXTENSION_CONFIG, Buffer.from(ecdsSamples[0]!.value, "base64")));
    assert.match(sample, new RegExp(`\\.wasm\\?node=${ecdsSamples[0]!.nodeId}"`));
    // Every other type is the same in both generations.
    const others = (g: number) => generations[g]!.types.filter((t) => t.typeUrl !== EXTENSION_CONFIG);
    assert.deepEqual(others(0), others(1));
  });
});
