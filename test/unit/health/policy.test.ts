import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decide, FailureWindow, type FilterFacts } from "../../../controlplane/health/policy.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);

describe("FailureWindow", () => {
  test("triggers when failures within the window reach the threshold", () => {
    const w = new FailureWindow({ threshold: 5, windowMs: 10_000 });
    assert.equal(w.add("f", 2, 1000), false);
    assert.equal(w.add("f", 2, 2000), false);
    assert.equal(w.count("f", 2000), 4);
    assert.equal(w.add("f", 1, 3000), true);
    assert.equal(w.firstAt("f", 3000), 1000);
  });

  test("failures older than the window no longer count", () => {
    const w = new FailureWindow({ threshold: 3, windowMs: 1000 });
    w.add("f", 2, 0);
    assert.equal(w.add("f", 1, 1500), false, "the first two fell out of the window");
    assert.equal(w.count("f", 1500), 1);
    assert.equal(w.firstAt("f", 1500), 1500);
  });

  test("counts per filter, reset clears one filter", () => {
    const w = new FailureWindow({ threshold: 2, windowMs: 1000 });
    w.add("f", 1, 0);
    w.add("g", 1, 0);
    w.reset("f");
    assert.equal(w.count("f", 0), 0);
    assert.equal(w.add("g", 1, 10), true);
  });

  test("threshold 0 is off", () => {
    const w = new FailureWindow({ threshold: 0, windowMs: 1000 });
    assert.equal(w.enabled, false);
    assert.equal(w.add("f", 100, 0), false);
  });
});

describe("decide", () => {
  const base: FilterFacts = { enabled: true, servingSha256: B, newestSha256: B, newestBuiltAtMs: 1000, history: [{ sha256: A }, { sha256: B }] };

  test("failures after the newest module went out roll back to the previous module", () => {
    const d = decide("f", base, 5, 2000, 60_000);
    assert.equal(d?.action, "rolled_back");
    assert.equal(d?.action === "rolled_back" ? d.sha256 : undefined, A);
    assert.match(d!.reason, /5 runtime failure\(s\) within 60 s after module bbbbbbbbbbbb went out: pinned the previous module aaaaaaaaaaaa of f/);
  });

  test("no older module: disable", () => {
    const d = decide("f", { ...base, history: [{ sha256: B }] }, 5, 2000, 60_000);
    assert.equal(d?.action, "disabled");
    assert.match(d!.reason, /no older good module/);
  });

  test("already pinned (a rollback that fails too): disable", () => {
    const d = decide("f", { ...base, servingSha256: A, pinnedSha256: A }, 5, 2000, 60_000);
    assert.equal(d?.action, "disabled");
    assert.match(d!.reason, /pinned module aaaaaaaaaaaa fails too/);
  });

  test("failures that began before the newest module went out: disable", () => {
    const d = decide("f", base, 5, 500, 60_000);
    assert.equal(d?.action, "disabled");
    assert.match(d!.reason, /began before the newest module/);
  });

  test("a filter already disabled is left alone", () => {
    assert.equal(decide("f", { ...base, enabled: false }, 5, 2000, 60_000), undefined);
  });
});
