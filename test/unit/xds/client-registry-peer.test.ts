// ClientRegistry.hasStream: the lookup the health monitor binds stats streams with (a node's
// live xDS stream from the same peer address:port).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientRegistry, type ClientStatus } from "../../../controlplane/xds/client-status.ts";

const stream = (streamId: number, nodeId: string, peer: string, nodeCluster = "edge"): ClientStatus =>
  ({ streamId, nodeId, nodeCluster, peer, connectedAt: new Date(0).toISOString(), types: new Map() });

test("hasStream: true only for that node (id and cluster) on that peer, while a stream is live", () => {
  const registry = new ClientRegistry();
  const a = { id: "envoy-a", cluster: "edge" };
  assert.equal(registry.hasStream(a, "127.0.0.1:1000"), false);
  registry.add(stream(1, "envoy-a", "127.0.0.1:1000"));
  registry.add(stream(2, "envoy-a", "127.0.0.1:1000")); // per-type streams share the connection
  registry.add(stream(3, "envoy-b", "127.0.0.1:2000"));
  assert.equal(registry.hasStream(a, "127.0.0.1:1000"), true);
  assert.equal(registry.hasStream(a, "127.0.0.1:2000"), false, "another connection");
  assert.equal(registry.hasStream({ id: "envoy-b", cluster: "edge" }, "127.0.0.1:1000"), false, "another node on that connection");
  assert.equal(registry.hasStream({ id: "envoy-a", cluster: "other" }, "127.0.0.1:1000"), false, "another cluster");
  registry.remove(1);
  assert.equal(registry.hasStream(a, "127.0.0.1:1000"), true, "one stream left");
  registry.remove(2);
  assert.equal(registry.hasStream(a, "127.0.0.1:1000"), false, "gone with its last stream");
  assert.equal(registry.hasStream({ id: "envoy-b", cluster: "edge" }, "127.0.0.1:2000"), true);
});
