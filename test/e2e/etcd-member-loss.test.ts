// A three-member etcd cluster loses one member (SIGKILL): two replicas and their Envoy notice
// nothing. Admin writes on either replica still succeed (a quorum of two remains) and reach the
// Envoy; the builder still builds an edit; the member rejoins with its data.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allocatePorts, startControlPlane, type ClientView, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { health, startEtcd, type EtcdCluster } from "../support/etcd.ts";
import { httpGet } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

type SnapshotView = Record<string, { version: string }>;

async function holdsSnapshot(cp: ControlPlaneProcess, node: string): Promise<boolean> {
  const [clients, snapRes] = await Promise.all([cp.clients(), cp.api("/api/snapshot")]);
  const snap = JSON.parse(snapRes.body) as SnapshotView;
  const c: ClientView | undefined = clients.find((x) => x.node.id === node);
  return c !== undefined && Object.entries(snap).every(([t, v]) => c.types[t]?.ackedVersion === v.version && c.types[t]?.lastNack === null);
}

describe("a three-member etcd loses a member: replicas and Envoy go on", { timeout: 180_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let etcd: EtcdCluster;
  let echo: EchoUpstream;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let listenerPort: number;
  const details = (): string => `--- a\n${a?.tail(10)}\n--- b\n${b?.tail(10)}\n--- envoy\n${envoy?.tail(10)}`;

  before(async () => {
    workDir = makeWorkDir("etcd-member-loss");
    filtersDir = path.join(workDir, "filters");
    for (const folder of ["_lib", "add-header"]) fs.cpSync(repoPath("filters", folder), path.join(filtersDir, folder), { recursive: true });
    [etcd, echo] = await Promise.all([startEtcd(workDir, 3), startEchoUpstream()]);
    const [pa, pb] = await Promise.all([allocatePorts(), allocatePorts()]);
    listenerPort = pa.listener;
    const common = {
      filtersDir, upstreamPort: echo.port, workDir, moduleAddress: `127.0.0.1:${pa.modules}`,
    };
    const env = (id: string) => ({
      CP_LOG_LEVEL: process.env.CP_LOG_LEVEL ?? "warn", CP_STORE: etcd.storeUrl, CP_REPLICA_ID: id, CP_ETCD_LEASE_TTL: "3", CP_MODULE_PEERS: `127.0.0.1:${pb.modules}`,
    });
    a = await startControlPlane({ ...common, ports: pa, stateFile: path.join(workDir, "unused-a.json"), name: "replica-a", env: env("a") });
    b = await startControlPlane({ ...common, ports: { ...pb, listener: listenerPort }, stateFile: path.join(workDir, "unused-b.json"), name: "replica-b", env: env("b") });
    await waitFor(async () => (await b.filter("add-header"))?.status === "ok", { what: "add-header built and shared", timeoutMs: 90_000, details });
    envoy = await startEnvoy({ bootstrap: { xdsPort: pb.xds, apiType: "GRPC", nodeId: "envoy-on-b" }, workDir });
    await envoy.waitReady(30_000);
    await waitFor(() => holdsSnapshot(b, "envoy-on-b"), { what: "the Envoy to ACK B's snapshot", timeoutMs: 30_000, details });
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all([a?.kill("SIGTERM"), b?.kill("SIGTERM")]);
    await echo?.close();
    await etcd?.stop();
  });

  it("one member killed: writes on both replicas land and reach the Envoy; an edit is built", async () => {
    await etcd.members[0]!.kill("SIGKILL");
    await waitFor(async () => (await health(etcd.members[1]!.clientUrl)), { what: "the two remaining members to have a leader", timeoutMs: 20_000 });
    const off = await a.api("/api/filters/add-header/disable", "POST");
    assert.equal(off.status, 200, off.body);
    await waitFor(async () => (await b.filter("add-header"))?.enabled === false && (await holdsSnapshot(b, "envoy-on-b")),
      { what: "the disable on A to reach B's Envoy", timeoutMs: 20_000, details });
    const on = await b.api("/api/filters/add-header/enable", "POST");
    assert.equal(on.status, 200, on.body);
    await waitFor(async () => (await a.filter("add-header"))?.enabled === true && (await holdsSnapshot(b, "envoy-on-b")),
      { what: "the enable on B to reach A and the Envoy", timeoutMs: 20_000, details });

    const old = (await b.filter("add-header"))!.sha256;
    const file = path.join(filtersDir, "add-header", "index.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"x-wasm-processed", "yes"', '"x-wasm-processed", "quorum"'));
    await waitFor(async () => {
      const f = await b.filter("add-header");
      return f?.status === "ok" && f.sha256 !== old && (await holdsSnapshot(b, "envoy-on-b"));
    }, { what: "the edit built (by A) and ACKed by B's Envoy", timeoutMs: 90_000, details });
    await waitFor(async () => {
      const r = await httpGet(`http://127.0.0.1:${listenerPort}/headers`);
      return r.status === 200 && (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-wasm-processed"] === "quorum";
    }, { what: "the edited filter to run", timeoutMs: 20_000, details });
  });

  it("the member rejoins with its data, and the cluster is whole", async () => {
    await etcd.members[0]!.start();
    await waitFor(async () => (await health(etcd.members[0]!.clientUrl)), { what: "the restarted member to serve", timeoutMs: 20_000 });
    const res = await a.api("/api/filters/add-header/disable", "POST");
    assert.equal(res.status, 200, res.body);
    await waitFor(async () => (await holdsSnapshot(b, "envoy-on-b")) && (await b.filter("add-header"))?.enabled === false,
      { what: "a write after the rejoin to reach the Envoy", timeoutMs: 20_000, details });
  });
});
