// FetchTracker's bounds: only nodes with a subscriber (a live xDS stream's ECDS delivery) are
// recorded, absurd node ids never are, and a node's records go some time after its last stream.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FetchTracker, MAX_TRACKED_NODE_ID } from "../../../controlplane/registry/fetch-tracker.ts";
import { waitFor } from "../../support/wait.ts";

const SHA = "a".repeat(64);

describe("FetchTracker", () => {
  test("a node nobody subscribed to is not recorded", () => {
    const t = new FetchTracker();
    t.started("stranger", SHA);
    t.completed("stranger", SHA);
    assert.equal(t.size, 0);
    assert.equal(t.state("stranger", SHA, 0), "none");
  });

  test("a subscribed node is recorded and woken", () => {
    const t = new FetchTracker();
    const woken: string[] = [];
    t.onCompleted("envoy-1", (node) => void woken.push(node));
    t.started("envoy-1", SHA);
    assert.equal(t.state("envoy-1", SHA, 0), "in-flight");
    t.completed("envoy-1", SHA);
    assert.equal(t.state("envoy-1", SHA, 0), "done");
    assert.deepEqual(woken, ["envoy-1"]);
    assert.equal(t.size, 1);
  });

  test("a download that began before the subscription counts when it ends", () => {
    const t = new FetchTracker();
    t.started("envoy-1", SHA); // not tracked yet: no stream
    t.onCompleted("envoy-1", () => {});
    t.completed("envoy-1", SHA);
    assert.equal(t.state("envoy-1", SHA, 0), "done");
  });

  test("a node id over the cap is never recorded, even with a subscriber", () => {
    const t = new FetchTracker();
    const huge = "x".repeat(MAX_TRACKED_NODE_ID + 1);
    let woken = 0;
    t.onCompleted(huge, () => woken++);
    t.started(huge, SHA);
    t.completed(huge, SHA);
    assert.equal(t.size, 0);
    assert.equal(woken, 0);
  });

  test("records outlive the last stream for the retention time, then go; a reconnect keeps them", async () => {
    const t = new FetchTracker(50);
    const stop = t.onCompleted("envoy-1", () => {});
    t.started("envoy-1", SHA);
    t.completed("envoy-1", SHA);
    t.onCompleted("envoy-2", () => {})();
    stop();
    // Reconnect within the retention: the record is still there.
    assert.equal(t.state("envoy-1", SHA, 0), "done");
    const again = t.onCompleted("envoy-1", () => {});
    t.started("envoy-1", "b".repeat(64)); // a download across the reconnect
    again();
    assert.equal(t.state("envoy-1", "b".repeat(64), 0), "in-flight");
    await waitFor(() => t.state("envoy-1", SHA, 0) === "none", { what: "the finished record to expire", timeoutMs: 5000 });
    assert.equal(t.size, 1, "the running download keeps its record");
    t.completed("envoy-1", "b".repeat(64));
    await waitFor(() => t.size === 0 && t.nodes === 0, { what: "the node to be forgotten", timeoutMs: 5000 });
  });
});
