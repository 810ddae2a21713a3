// envoy-bootstrap/envoy-ha.yaml (docker compose --profile ha) is envoy.yaml with the xDS cluster
// pointed at two replicas: everything else must stay the same, so the two files cannot drift.
import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";
import YAML from "yaml";
import { repoPath } from "../support/paths.ts";

type Doc = { static_resources: { clusters: Record<string, unknown>[] } };

const load = (file: string): Doc => YAML.parse(fs.readFileSync(repoPath("envoy-bootstrap", file), "utf8")) as Doc;

test("envoy-ha.yaml differs from envoy.yaml only in xds_cluster's endpoints and health check", () => {
  const base = load("envoy.yaml");
  const ha = load("envoy-ha.yaml");
  const haCluster = ha.static_resources.clusters[0]!;
  const endpoints = (haCluster.load_assignment as { endpoints: { priority: number; lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] }).endpoints;
  assert.deepEqual(endpoints.map((e) => [e.priority, e.lb_endpoints.map((l) => `${l.endpoint.address.socket_address.address}:${l.endpoint.address.socket_address.port_value}`)]),
    [[0, ["cp-a:18000"]], [1, ["cp-b:18000"]]]);
  for (const doc of [base, ha]) {
    const cluster = doc.static_resources.clusters[0]!;
    delete cluster.load_assignment;
    delete cluster.health_checks;
  }
  assert.deepEqual(ha, base);
});
