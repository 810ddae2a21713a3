// Replicas are interchangeable: two control plane processes fed the same filters dir and the
// same operator state serve byte-identical resources under identical versions, and a real Envoy
// moved from one to the other (the first is SIGKILLed; the bootstrap's xds_cluster fails over
// to the second by priority) reloads nothing: no new Wasm VM, no listener change or drain, no
// module fetch, no config update of any kind, and no request fails or skips the filter.
//
// What makes the replicas "the same" from Envoy's point of view is configured identically on
// both: the listener port, the upstream, and the module address (the URL is part of the ECDS
// resources). Replicas behind a load balancer share one module address; here both name A's
// module server, which is fine because nothing is fetched after the move (asserted).
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { AdsApiType } from "../support/bootstrap.ts";
import { allocatePorts, copyFilters, startControlPlane, type ClientView, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

const MODES: { label: string; apiType: AdsApiType }[] = [
  { label: "ADS, state of the world", apiType: "GRPC" },
  { label: "ADS, delta", apiType: "DELTA_GRPC" },
];

/** Operator state that shapes the resources: a configuration override and a disabled filter. */
const SHARED_STATE = { filters: { "add-header": { configuration: "from-shared-state" }, second: { enabled: false } } };

/** Per type URL: the version and each resource's content hash (GET /api/snapshot). */
type SnapshotView = Record<string, { short: string; version: string; resources: Record<string, string> }>;

interface Echoed {
  headers: Record<string, string>;
}

/**
 * Stats that move when Envoy applies (or merely receives) configuration, or loads code: none of
 * them may change when it moves to a replica. Dynamic names (per filter, per route) are
 * matched by pattern over the whole stats dump.
 */
const CONFIG_STAT = new RegExp([
  String.raw`^wasm\.envoy\.wasm\.runtime\.v8\.(created|active)$`,
  String.raw`^wasm\.remote_load_`,
  String.raw`^listener_manager\.(listener_(added|modified|removed|create_success|create_failure|in_place_updated)|total_listeners_(active|warming|draining))$`,
  String.raw`^listener_manager\.lds\.(update_success|update_rejected|update_empty|version)$`,
  // (Not cluster_updated: it counts host health changes too, such as xds_cluster losing A.)
  String.raw`^cluster_manager\.(cluster_(added|modified|removed)|active_clusters|warming_clusters)$`,
  String.raw`^cluster_manager\.cds\.(update_success|update_rejected|update_empty|version)$`,
  String.raw`^cluster\.(upstream|wasm_modules)\.(eds\.)?(update_success|update_rejected|update_empty|version)$`,
  String.raw`^cluster\.wasm_modules\.upstream_(rq|cx)_total$`,
  String.raw`^http\.ingress_http\.rds\.[^.]+\.(config_reload|update_success|update_rejected|update_empty|version)$`,
  // (Not update_attempt/update_failure: the lost stream counts as a failed update attempt.)
  String.raw`^extension_config_discovery\.http_filter\.[^.]+\.(config_reload|config_fail|update_success|update_rejected|update_empty|version)$`,
].join("|"));

function pick(stats: Record<string, number>, re: RegExp): Record<string, number> {
  return Object.fromEntries(Object.entries(stats).filter(([name]) => re.test(name)).sort(([a], [b]) => a.localeCompare(b)));
}

function ackedVersions(client: ClientView): Record<string, string | null> {
  return Object.fromEntries(Object.entries(client.types).map(([typeUrl, t]) => [typeUrl, t.ackedVersion]));
}

/** The node's view on a control plane once every type it subscribes to is ACKed at what was sent. */
function settled(clients: ClientView[], nodeId: string): ClientView | undefined {
  const c = clients.find((x) => x.node.id === nodeId);
  const types = c ? Object.values(c.types) : [];
  return c && types.length > 0 && types.every((t) => t.ackedVersion !== null && t.ackedVersion === t.sentVersion && t.lastNack === null) ? c : undefined;
}

for (const mode of MODES) describe(`replicas are interchangeable through a real Envoy (${mode.label})`, { timeout: 90_000 }, () => {
  const NODE = "envoy-local"; // the template's node.id
  let workDir: string;
  let echo: EchoUpstream;
  let portsA: ControlPlanePorts;
  let portsB: ControlPlanePorts;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let listenerUrl: string;

  const details = (): string =>
    `--- envoy ${envoy?.describe()}\n${envoy?.tail(30)}\n--- control plane A\n${a?.tail(15)}\n--- control plane B\n${b?.tail(15)}`;
  const get = (agent?: http.Agent): Promise<HttpResponse> => httpGet(`${listenerUrl}/headers`, undefined, agent);
  const echoed = (r: HttpResponse): Echoed => JSON.parse(r.body) as Echoed;
  const snapshotOf = async (cp: ControlPlaneProcess): Promise<SnapshotView> => {
    const r = await cp.api("/api/snapshot");
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as SnapshotView;
  };
  /** 200, add-header ran with the shared state's configuration, the disabled filter did not. */
  const filterRan = (r: HttpResponse): string | undefined => {
    if (r.status !== 200) return `status ${r.status}: ${r.body.slice(0, 200)}`;
    const h = echoed(r).headers;
    if (h["x-wasm-processed"] !== "yes") return `x-wasm-processed at the upstream: ${h["x-wasm-processed"]}`;
    if (h["x-second-processed"] !== undefined) return `the disabled filter ran: x-second-processed ${h["x-second-processed"]}`;
    if (r.headers["x-wasm-config"] !== "from-shared-state") return `x-wasm-config ${String(r.headers["x-wasm-config"])}`;
    return undefined;
  };

  before(async () => {
    workDir = makeWorkDir(`replicas-${mode.apiType}`);
    // One filters dir, as replicas would mount the same tree; a second filter (a renamed copy
    // of the seed) that the shared state disables, so the state visibly shapes the resources.
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    const second = path.join(filtersDir, "second");
    fs.mkdirSync(second);
    const seed = fs.readFileSync(path.join(filtersDir, "add-header", "index.ts"), "utf8");
    fs.writeFileSync(path.join(second, "index.ts"), seed.replaceAll("x-wasm-processed", "x-second-processed").replace(/"add-header"\);\s*$/, '"second");\n'));
    fs.writeFileSync(path.join(second, "filter.json"), JSON.stringify({ order: 20 }));
    // Two state files with the same content: each replica writes its own atomically.
    const stateA = path.join(workDir, "state-a.json");
    const stateB = path.join(workDir, "state-b.json");
    for (const f of [stateA, stateB]) fs.writeFileSync(f, JSON.stringify(SHARED_STATE, null, 2));

    [portsA, portsB, echo] = await Promise.all([allocatePorts(), allocatePorts(), startEchoUpstream()]);
    // Same listener port and module address on both (only xds/modules/admin ports differ).
    portsB = { ...portsB, listener: portsA.listener };
    listenerUrl = `http://127.0.0.1:${portsA.listener}`;
    const moduleAddress = `127.0.0.1:${portsA.modules}`;
    [a, b] = await Promise.all([
      startControlPlane({ ports: portsA, filtersDir, stateFile: stateA, upstreamPort: echo.port, workDir, name: "controlplane-a", moduleAddress }),
      startControlPlane({ ports: portsB, filtersDir, stateFile: stateB, upstreamPort: echo.port, workDir, name: "controlplane-b", moduleAddress }),
    ]);
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all([a?.kill("SIGTERM"), b?.kill("SIGTERM")]);
    await echo?.close();
  });

  it("two replicas fed the same filters and state serve identical resources under identical versions", async () => {
    const [filtersA, filtersB] = await Promise.all([a.filters(), b.filters()]);
    const essence = (list: typeof filtersA) => list.map(({ name, enabled, order, sha256, status }) => ({ name, enabled, order, sha256, status }));
    assert.deepEqual(essence(filtersA), essence(filtersB), "same modules (by sha256), order and state");
    assert.deepEqual(essence(filtersA).map((f) => `${f.name}:${f.enabled}:${f.status}`), ["add-header:true:ok", "second:false:ok"]);

    const [snapA, snapB] = await Promise.all([snapshotOf(a), snapshotOf(b)]);
    assert.deepEqual(snapB, snapA, "per type: same version, same resource names, same content hashes");
    assert.deepEqual(Object.values(snapA).map((t) => t.short).sort(), ["CDS", "ECDS", "EDS", "LDS", "RDS"].sort());
    assert.deepEqual(Object.keys(Object.values(snapA).find((t) => t.short === "ECDS")!.resources), ["add-header", "second"]);
    for (const t of Object.values(snapA)) assert.match(t.version, /^[0-9a-f]+$/, `${t.short} has a content-hash version`);
  });

  it("an Envoy bootstrapped with both replicas (A preferred) runs the filters from A", async () => {
    envoy = await startEnvoy({
      bootstrap: { xdsPort: portsA.xds, xdsFailoverPorts: [portsB.xds], apiType: mode.apiType },
      workDir,
      concurrency: 2,
      componentLogLevel: "upstream:info,config:info,wasm:info",
    });
    await envoy.waitReady(30_000);
    await waitFor(async () => filterRan(await get()) === undefined, { what: "add-header to run with the shared state", timeoutMs: 20_000, details, signal: envoy.exitSignal });
    const onA = await waitFor(async () => settled(await a.clients(), NODE), { what: "Envoy to ACK everything on A", timeoutMs: 20_000, details, signal: envoy.exitSignal });
    const snap = await snapshotOf(a);
    assert.deepEqual(ackedVersions(onA), Object.fromEntries(Object.entries(snap).map(([typeUrl, t]) => [typeUrl, t.version])), "Envoy holds A's snapshot versions of every type");
    assert.deepEqual(await b.clients(), [], "B has no client yet");
  });

  it("SIGKILL of A moves Envoy to B, which sends nothing: no reload, no new VM, no drain, no failed request", async () => {
    const onA = settled(await a.clients(), NODE);
    assert.ok(onA, "Envoy is settled on A");
    const versionsOnA = ackedVersions(onA);
    const allBefore = await envoy.stats();
    const statsBefore = pick(allBefore, CONFIG_STAT);
    const failuresBefore = pick(allBefore, /^extension_config_discovery\.http_filter\.[^.]+\.update_failure$/);
    // Everything Envoy holds, with each resource's version_info and last_updated time.
    const dumpBefore = await envoy.configDump();
    assert.ok((statsBefore["wasm.envoy.wasm.runtime.v8.created"] ?? 0) > 0, `the VM-created stat exists: ${JSON.stringify(statsBefore)}`);
    assert.ok(Object.keys(statsBefore).some((n) => n.startsWith("extension_config_discovery.")), "ECDS stats exist");

    // A probe loop on loopback throughout the move: one kept-alive connection (a listener
    // drain would close it) and fresh connections, every response checked.
    const kept = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let keptSockets = 0;
    const create = kept.createConnection.bind(kept);
    kept.createConnection = (...args: Parameters<typeof create>) => {
      keptSockets++;
      return create(...args);
    };
    const failures: string[] = [];
    let total = 0;
    let stop = false;
    const MAX_REQUESTS = 20_000;
    const probe = async (agent?: http.Agent): Promise<void> => {
      while (!stop && total < MAX_REQUESTS) {
        total++;
        try {
          const why = filterRan(await get(agent));
          if (why) failures.push(why);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const load = Promise.all([probe(kept), probe()]);
    const t0 = Date.now();
    let timings = "";
    try {
      await waitFor(() => total > 50, { what: "the probe loop to start", timeoutMs: 10_000, details });
      await a.kill("SIGKILL");
      const killedAt = Date.now();
      const onB = await waitFor(async () => settled(await b.clients(), NODE), {
        what: "Envoy to reconnect to B and be in sync there",
        timeoutMs: 30_000,
        details: async () => `B clients: ${JSON.stringify(await b.clients())}\n${details()}`,
        signal: envoy.exitSignal,
      });
      const onBAt = Date.now();
      assert.deepEqual(ackedVersions(onB), versionsOnA, "on B, every type is ACKed at the version Envoy ACKed from A");
      // Keep probing a little after the move, then stop.
      const target = total + 200;
      await waitFor(() => total >= target || total >= MAX_REQUESTS, { what: "200 more requests after the move", timeoutMs: 10_000, details });
      timings = `kill -> in sync on B ${onBAt - killedAt} ms; ${total} requests in ${Date.now() - t0} ms`;
    } finally {
      stop = true;
      await load;
      kept.destroy();
    }
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${total} requests failed or skipped the filter`);
    assert.equal(keptSockets, 1, "the kept-alive connection survived the move (no listener drain)");

    // Envoy is on B, not merely between streams: the xDS cluster has a live connection and
    // B's stream is the one listed.
    assert.ok(((await envoy.stat("cluster.xds_cluster.upstream_cx_active")) ?? 0) > 0, "Envoy has an xDS connection");
    const all = await envoy.stats();
    assert.deepEqual(pick(all, CONFIG_STAT), statsBefore, "no config update, reload, VM, listener or module fetch after the move");
    assert.deepEqual(await envoy.configDump(), dumpBefore, "Envoy's config dump (versions, last_updated times) is unchanged");
    // The move really happened from Envoy's side too: each ECDS subscription saw its stream fail.
    for (const [name, n] of Object.entries(pick(all, /^extension_config_discovery\.http_filter\.[^.]+\.update_failure$/))) {
      assert.ok(n > (failuresBefore[name] ?? 0), `${name} went up (${failuresBefore[name]} -> ${n}): Envoy lost A's stream`);
    }
    // Both sides of the move as B sees it: nothing was sent, so sent == acked == A's versions.
    const onB = settled(await b.clients(), NODE)!;
    for (const [typeUrl, t] of Object.entries(onB.types)) assert.equal(t.sentVersion, versionsOnA[typeUrl], `${t.short}: B's version is A's`);
    console.log(`# ${mode.label}: ${timings}`);
  });
});
