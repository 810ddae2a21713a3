/**
 * The one bootstrap (envoy-bootstrap/envoy.yaml) against the real Envoy 1.40 binary:
 * it validates as shipped and as rendered for tests, a test Envoy starts from it, and it
 * opens the ADS stream of the configured flavour over HTTP/2 to the xDS cluster.
 *
 * Facts checked here (Envoy 1.40, no control plane):
 * - admin /ready answers 503 "PRE_INITIALIZING" until CDS arrives; only after the CDS and then
 *   LDS initial_fetch_timeout (15 s each by default) would it become LIVE, so nothing here
 *   waits for LIVE.
 * - control_plane.connected_state is 0 without a control plane, 1 once the ADS stream is up.
 * - with --disable-hot-restart two Envoys on the same (default) base id run side by side.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import YAML from "yaml";
import { renderBootstrap, TEST_XDS_TOKEN, writeBootstrap, type AdsApiType } from "../support/bootstrap.ts";
import { startEnvoy, validateConfig, type EnvoyProcess } from "../support/envoy.ts";
import { bootstrapTemplatePath, makeWorkDir } from "../support/paths.ts";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/wait.ts";

const workDir = makeWorkDir("bootstrap");

/** Stops every Envoy a test started, even when the test failed half-way. */
const started: EnvoyProcess[] = [];
async function start(...args: Parameters<typeof startEnvoy>): Promise<EnvoyProcess> {
  const envoy = await startEnvoy(...args);
  started.push(envoy);
  return envoy;
}
after(async () => {
  await Promise.all(started.map((envoy) => envoy.stop()));
});

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

describe("envoy --mode validate", () => {
  test("accepts envoy-bootstrap/envoy.yaml as shipped", async () => {
    const result = await validateConfig(bootstrapTemplatePath);
    assert.ok(result.ok, `validate failed (code ${String(result.code)}):\n${result.output}`);
    assert.match(result.output, /OK/);
  });

  for (const apiType of ["GRPC", "DELTA_GRPC"] as const) {
    test(`accepts the rendered test bootstrap (${apiType})`, async () => {
      const file = writeBootstrap(workDir, { xdsPort: 18000, adminPort: 0, apiType, nodeId: "validate" }, `validate-${apiType}.yaml`);
      const result = await validateConfig(file);
      assert.ok(result.ok, `validate failed (code ${String(result.code)}):\n${result.output}`);
    });
  }

  test("rejects a broken bootstrap (the check is not vacuous)", async () => {
    const broken = fs.readFileSync(bootstrapTemplatePath, "utf8").replace("connect_timeout:", "connect_timeout_typo:");
    const file = path.join(workDir, "broken.yaml");
    fs.writeFileSync(file, broken);
    const result = await validateConfig(file);
    assert.equal(result.ok, false);
    assert.match(result.output, /connect_timeout_typo/);
  });
});

describe("renderBootstrap", () => {
  test("overrides only the xDS endpoint, admin address, node and api_type", () => {
    const template: unknown = YAML.parse(fs.readFileSync(bootstrapTemplatePath, "utf8"));
    const rendered: unknown = YAML.parse(
      // xdsToken null: the template's token placeholder stays (the token is checked below).
      renderBootstrap({ xdsPort: 4321, adminPort: 1234, nodeId: "n-1", nodeCluster: "c-1", apiType: "DELTA_GRPC", xdsToken: null }),
    );

    // Apply the documented overrides to the template by hand; the rest must be identical.
    const expected = structuredClone(template) as {
      node: { id: string; cluster: string };
      admin: { address: { socket_address: { address: string; port_value: number } } };
      dynamic_resources: { ads_config: { api_type: string } };
      static_resources: { clusters: Array<Record<string, unknown> & { load_assignment: { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }> } }> };
    };
    expected.node = { id: "n-1", cluster: "c-1" };
    expected.admin.address.socket_address = { address: "127.0.0.1", port_value: 1234 };
    expected.dynamic_resources.ads_config.api_type = "DELTA_GRPC";
    const cluster = expected.static_resources.clusters[0];
    assert.ok(cluster);
    assert.equal(cluster.name, "xds_cluster");
    cluster.type = "STATIC";
    const endpoint = cluster.load_assignment.endpoints[0]?.lb_endpoints[0]?.endpoint;
    assert.ok(endpoint);
    endpoint.address.socket_address = { address: "127.0.0.1", port_value: 4321 };

    assert.deepEqual(rendered, expected);
  });

  test("keeps STRICT_DNS for a host name and the template's node by default", () => {
    const rendered: unknown = YAML.parse(renderBootstrap({ xdsPort: 18000, xdsHost: "localhost", adminPort: 0 }));
    assert.ok(isRecord(rendered));
    assert.deepEqual(rendered.node, { id: "envoy-local", cluster: "wasm-xds" });
    const text = JSON.stringify(rendered);
    assert.match(text, /"type":"STRICT_DNS"/);
    assert.match(text, /"address":"localhost","port_value":18000/);
    // By default both grpc_services (ADS, stats sink) send the test run's xDS token.
    assert.equal(text.split(`"value":"Bearer ${TEST_XDS_TOKEN}"`).length - 1, 2);
    assert.ok(!text.includes("__CP_XDS_TOKEN__"));
  });
});

describe("a test Envoy from the rendered bootstrap", () => {
  test("starts, serves admin, and waits in PRE_INITIALIZING without a control plane", { timeout: 10_000 }, async () => {
    const xdsPort = await freePort(); // nothing listens there
    const envoy = await start({ bootstrap: { xdsPort, nodeId: "no-cp" }, workDir, name: "no-cp" });

    const ready = await envoy.admin("/ready");
    assert.equal(ready.status, 503, `expected 503 from /ready, got ${ready.status} ${ready.body}`);
    assert.equal(ready.body.trim(), "PRE_INITIALIZING");
    assert.equal(await envoy.stat("control_plane.connected_state"), 0);
    assert.equal(await envoy.stat("no.such.stat"), undefined);

    const info: unknown = JSON.parse((await envoy.admin("/server_info")).body);
    assert.ok(isRecord(info));
    assert.match(String(info.version), /\/1\.40\.0\//);
    assert.ok(isRecord(info.command_line_options));
    assert.equal(info.command_line_options.concurrency, 1);
    assert.equal(info.hot_restart_version, "disabled");

    const dump = await envoy.configDump("static_clusters");
    const text = JSON.stringify(dump.configs);
    assert.match(text, /"name":"xds_cluster"/);
    assert.match(text, /"type":"STATIC"/);
    assert.match(text, new RegExp(`"port_value":${xdsPort}`));
    assert.deepEqual((await envoy.configDump("ecds_filters")).configs, []);
    assert.equal(await envoy.listenerReady(10000), false);

    const exit = await envoy.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(envoy.running, false);
    assert.match(envoy.tail(5), /exiting/);
  });

  test("two Envoys run side by side without distinct --base-id (hot restart disabled)", { timeout: 10_000 }, async () => {
    const [a, b] = await Promise.all([
      start({ bootstrap: { xdsPort: await freePort() }, workDir, name: "side-a" }),
      start({ bootstrap: { xdsPort: await freePort() }, workDir, name: "side-b" }),
    ]);
    assert.notEqual(a.adminPort, b.adminPort);
    assert.equal(await a.serverState(), "PRE_INITIALIZING");
    assert.equal(await b.serverState(), "PRE_INITIALIZING");
    await Promise.all([a.stop(), b.stop()]);
  });

  test("a start failure is reported with Envoy's log", { timeout: 10_000 }, async () => {
    // Occupy the admin port so Envoy cannot bind it and exits.
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: "127.0.0.1", port: 0 }, resolve));
    const address = blocker.address();
    assert.ok(address !== null && typeof address !== "string");
    try {
      await assert.rejects(
        startEnvoy({ bootstrap: { xdsPort: await freePort(), adminPort: address.port }, workDir, name: "port-taken" }),
        (err: unknown) => {
          assert.ok(err instanceof Error);
          assert.match(err.message, /envoy did not start/);
          assert.match(err.message, /exited with code 1/);
          assert.match(err.message, /last log lines/);
          assert.match(err.message, /Address already in use/);
          return true;
        },
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

/**
 * A bare HTTP/2 server standing in for the control plane: it records which ADS method Envoy
 * calls and the bytes of its first DiscoveryRequest, and never answers (so the stream stays up).
 */
interface FakeAds {
  port: number;
  paths: string[];
  firstMessage: Buffer | undefined;
  close(): Promise<void>;
}

async function startFakeAds(): Promise<FakeAds> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  const state: FakeAds = { port: 0, paths: [], firstMessage: undefined, close: async () => undefined };
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", (stream, headers) => {
    state.paths.push(String(headers[":path"]));
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.on("data", (chunk: Buffer) => {
      state.firstMessage = state.firstMessage ? Buffer.concat([state.firstMessage, chunk]) : chunk;
    });
    stream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address !== "string");
  state.port = address.port;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const session of sessions) session.destroy();
      server.close(() => resolve());
    });
  return state;
}

describe("the ADS stream over the xds_cluster", () => {
  const methods: Record<AdsApiType, string> = {
    GRPC: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    DELTA_GRPC: "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
  };
  let ads: FakeAds;
  before(async () => {
    ads = await startFakeAds();
  });
  after(async () => {
    await ads.close();
  });

  for (const apiType of ["GRPC", "DELTA_GRPC"] as const) {
    test(`${apiType}: Envoy dials ${methods[apiType].split("/").pop()} over HTTP/2 with node and CDS request`, { timeout: 10_000 }, async () => {
      ads.paths = [];
      ads.firstMessage = undefined;
      const nodeId = `ads-${apiType.toLowerCase()}`;
      const envoy = await start({ bootstrap: { xdsPort: ads.port, apiType, nodeId, nodeCluster: "wasm-xds-test" }, workDir, name: nodeId });

      await waitFor(async () => (await envoy.stat("control_plane.connected_state")) === 1, {
        timeoutMs: 5_000,
        what: "control_plane.connected_state == 1",
        details: () => envoy.tail(20),
      });
      const first = await waitFor(() => ads.firstMessage, { timeoutMs: 5_000, what: "Envoy's first DiscoveryRequest" });
      assert.deepEqual(ads.paths, [methods[apiType]]);
      // Without decoding protobuf: the first request carries the node and asks for clusters.
      const text = first.toString("latin1");
      assert.ok(text.includes(nodeId), "first request carries node.id");
      assert.ok(text.includes("wasm-xds-test"), "first request carries node.cluster");
      assert.ok(text.includes("type.googleapis.com/envoy.config.cluster.v3.Cluster"), "first request is for CDS");
      // Still waiting for CDS: not LIVE.
      assert.equal(await envoy.serverState(), "PRE_INITIALIZING");
      await envoy.stop();
    });
  }
});
