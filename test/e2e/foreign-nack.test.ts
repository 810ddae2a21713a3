// One client cannot empty the configuration of the Envoys that connect after it (issue 10,
// item 1), against the real control plane process and real Envoys. Seen before: a client on the
// xDS port subscribed to LDS and CDS, NACKed each response once and left; every Envoy that
// connected afterwards was sent empty listener and cluster lists (SotW: delete everything):
// no active listener, connection refused, while Envoy's /ready said LIVE.
// The client here holds the xDS token (an unauthenticated one is refused outright: xds-auth
// tests); what it may still do is decide nothing for Envoys outside its node group, and never
// leave a resource out.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { DiscoveryRequest, DiscoveryResponse } from "../../controlplane/xds/discovery-types.ts";
import { CLUSTER, LISTENER } from "../../controlplane/xds/type-urls.ts";
import { adsClientConstructor } from "../../bench/support/sim-envoy.ts";
import { TEST_XDS_TOKEN, type AdsApiType } from "../support/bootstrap.ts";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

/** The template's node (envoy-bootstrap/envoy.yaml): the foreign client claims the same group. */
const NODE_CLUSTER = "wasm-xds";

/** A client that subscribes to LDS and CDS over ADS, NACKs each first response, and leaves. */
async function nackOnceAndLeave(port: number, nodeCluster: string): Promise<void> {
  const Ctor = adsClientConstructor();
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${TEST_XDS_TOKEN}`);
  const call = (client as unknown as { StreamAggregatedResources(m: grpc.Metadata): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> })
    .StreamAggregatedResources(metadata);
  const received: DiscoveryResponse[] = [];
  let status: grpc.StatusObject | undefined;
  call.on("data", (r: DiscoveryResponse) => received.push(r));
  call.on("status", (s: grpc.StatusObject) => (status = s));
  call.on("error", () => undefined);
  try {
    call.write({ node: { id: "foreign", cluster: nodeCluster }, type_url: LISTENER, resource_names: [] });
    call.write({ type_url: CLUSTER, resource_names: [] });
    const got = await waitFor(() => {
      if (status) throw new Error(`the foreign stream ended: ${status.code} ${status.details}`);
      return received.length >= 2 ? received : undefined;
    }, { what: "LDS and CDS responses for the foreign client", timeoutMs: 10_000 });
    for (const r of got) {
      call.write({ type_url: r.type_url, version_info: "", response_nonce: r.nonce, resource_names: [], error_detail: { code: 13, message: "foreign NACK" } });
    }
  } finally {
    // Half-close after the NACKs are written; the server records them before it sees the end.
    call.end();
  }
  await waitFor(() => status, { what: "the foreign stream to close", timeoutMs: 10_000 });
  client.close();
}

for (const apiType of ["GRPC", "DELTA_GRPC"] as AdsApiType[]) {
  describe(`a NACKing client and the Envoys that connect after it (${apiType})`, { timeout: 90_000 }, () => {
    let workDir: string;
    let echo: EchoUpstream;
    let ports: ControlPlanePorts;
    let cp: ControlPlaneProcess;
    let envoy: EnvoyProcess | undefined;
    const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(25)}\n--- control plane\n${cp?.tail(25)}`;

    before(async () => {
      workDir = makeWorkDir(`foreign-nack-${apiType}`);
      const filtersDir = copyFilters(path.join(workDir, "filters"));
      [ports, echo] = await Promise.all([allocatePorts(), startEchoUpstream()]);
      cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
    });

    after(async () => {
      await envoy?.stop();
      await cp?.kill("SIGTERM");
      await echo?.close();
    });

    it("a later Envoy of the same node group still gets its listener and clusters, and serves", async () => {
      await nackOnceAndLeave(ports.xds, NODE_CLUSTER);
      const nacks = await waitFor(async () => {
        const r = await cp.api("/metrics");
        const m = /^wasmxds_xds_nacks_total\{type="LDS"\} (\d+)$/m.exec(r.body);
        return m && Number(m[1]) >= 1 ? r.body : undefined;
      }, { what: "the foreign NACKs to be recorded", timeoutMs: 10_000, details });
      assert.match(nacks, /^wasmxds_xds_nacks_total\{type="CDS"\} 1$/m, "the CDS NACK is recorded too");

      envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds, apiType }, workDir, name: `envoy-${apiType}` });
      await envoy.waitReady(30_000);
      await waitFor(async () => (await envoy!.listenerReady(ports.listener)) || undefined, {
        what: "the listener to be active in the later Envoy", timeoutMs: 20_000, details, signal: envoy.exitSignal,
      });
      assert.equal(await envoy.stat("listener_manager.total_listeners_active"), 1);
      const r = await waitFor(async () => {
        const res = await httpGet(`http://127.0.0.1:${ports.listener}/headers`);
        return res.status === 200 ? res : undefined;
      }, { what: "a 200 through the later Envoy", timeoutMs: 20_000, details, signal: envoy.exitSignal });
      assert.equal(r.headers["x-wasm-filter"], "add-header", "the filter runs");
      const clusters = await envoy.configDump("dynamic_active_clusters");
      assert.ok(clusters.configs.length >= 2, `the upstream and module clusters are there: ${clusters.configs.length}`);
    });
  });
}
