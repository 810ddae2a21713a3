// The whole user workflow against the real Envoy binary: seed filter, new filter folder,
// edit under load, disable/enable, broken edit, control plane SIGKILL + restart.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import type { BootstrapOpts } from "../support/bootstrap.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

/** A filter that stamps a version into request and response headers. */
function stampFilter(rootId: string, version: string, extra = ""): string {
  return `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { readPluginConfiguration } from "../_lib/config";

class StampRoot extends RootContext {
  configValue: string = "";
  createContext(context_id: u32): Context { return new Stamp(context_id, this); }
  onConfigure(configuration_size: u32): bool {
    this.configValue = readPluginConfiguration(configuration_size);
    return true;
  }
}

class Stamp extends Context {
  configValue: string;
  constructor(context_id: u32, root: StampRoot) { super(context_id, root); this.configValue = root.configValue; }
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-stamp", "${version}");
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-stamp", "${version}");
    stream_context.headers.response.add("x-stamp-config", this.configValue);
    return FilterHeadersStatusValues.Continue;
  }
}
${extra}
registerRootContext((context_id: u32): RootContext => new StampRoot(context_id), "${rootId}");
`;
}

interface Echoed {
  headers: Record<string, string>;
}

// The same workflow for each way Envoy can talk to the control plane.
const MODES: { label: string; bootstrap: Pick<BootstrapOpts, "apiType" | "perTypeServices"> }[] = [
  { label: "ADS, state of the world", bootstrap: { apiType: "GRPC" } },
  { label: "ADS, delta", bootstrap: { apiType: "DELTA_GRPC" } },
  { label: "per-type services, state of the world", bootstrap: { apiType: "GRPC", perTypeServices: true } },
  { label: "per-type services, delta", bootstrap: { apiType: "DELTA_GRPC", perTypeServices: true } },
];

for (const mode of MODES) describe(`hot reload through a real Envoy (${mode.label})`, { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let stateFile: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let listenerUrl: string;

  const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(30)}\n--- control plane\n${cp?.tail(30)}`;
  const get = (agent?: http.Agent): Promise<HttpResponse> => httpGet(`${listenerUrl}/headers`, undefined, agent);
  const echoed = (r: HttpResponse): Echoed => JSON.parse(r.body) as Echoed;
  /** Waits until a request through Envoy satisfies `ok`. */
  const until = (what: string, ok: (r: HttpResponse) => boolean, timeoutMs = 30_000): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await get();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs, details, signal: envoy.exitSignal });

  before(async () => {
    workDir = makeWorkDir(`hot-reload-${mode.bootstrap.perTypeServices ? "pertype" : "ads"}-${mode.bootstrap.apiType}`);
    filtersDir = copyFilters(path.join(workDir, "filters"));
    stateFile = path.join(workDir, "state.json");
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    listenerUrl = `http://127.0.0.1:${ports.listener}`;
    cp = await startControlPlane({ ports, filtersDir, stateFile, upstreamPort: echo.port, workDir });
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds, ...mode.bootstrap }, workDir, concurrency: 2, componentLogLevel: "wasm:info,config:info" });
    await envoy.waitReady(30_000);
  });

  after(async () => {
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("the seed filter's header reaches the upstream and its response header reaches the client", async () => {
    const r = await until("the add-header filter to run", (x) => x.status === 200 && echoed(x).headers["x-wasm-processed"] === "yes");
    assert.equal(r.headers["x-wasm-filter"], "add-header");
    const [f] = await cp.filters();
    assert.equal(f?.name, "add-header");
    assert.equal(f?.status, "ok");
    assert.match(f?.sha256 ?? "", /^[0-9a-f]{64}$/);
    // What Envoy runs is what the API says: the ECDS config names the same sha256.
    const dump = JSON.stringify(await envoy.configDump("ecds_filters"));
    assert.ok(dump.includes(f!.sha256!), `ecds_filters config dump names ${f!.sha256}`);
  });

  it("a new filter folder is built and goes live, with its manifest's configuration", async () => {
    const dir = path.join(filtersDir, "stamp");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: 20, configuration: "from-manifest" }));
    fs.writeFileSync(path.join(dir, "index.ts"), stampFilter("stamp_root", "v1"));
    const r = await until("the new stamp filter to run", (x) => x.status === 200 && echoed(x).headers["x-stamp"] === "v1", 60_000);
    assert.equal(echoed(r).headers["x-wasm-processed"], "yes", "the seed filter still runs");
    assert.equal(r.headers["x-stamp-config"], "from-manifest", "plugin configuration reaches onConfigure");
    const names = (await cp.filters()).map((f) => `${f.name}:${f.order}:${f.status}`);
    assert.deepEqual(names, ["add-header:10:ok", "stamp:20:ok"]);
  });

  it("an edit under concurrent load goes live with zero non-200 responses", async () => {
    const agents = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const statuses = new Map<number, number>();
    const errors: string[] = [];
    let sawV2 = 0;
    let stop = false;
    let total = 0;
    const MAX_REQUESTS = 50_000;
    const worker = async (agent: http.Agent): Promise<void> => {
      while (!stop && total < MAX_REQUESTS) {
        total++;
        try {
          const r = await get(agent);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status === 200 && echoed(r).headers["x-stamp"] === "v2") sawV2++;
        } catch (err) {
          errors.push(String(err));
        }
      }
    };
    const load = Promise.all(agents.map(worker));
    try {
      await waitFor(() => total > 200, { what: "load to start", timeoutMs: 10_000 });
      fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampFilter("stamp_root", "v2"));
      // Keep the load on until a few hundred requests have seen the new module.
      await waitFor(() => sawV2 > 300, { what: "v2 to serve 300 requests under load", timeoutMs: 60_000, details });
    } finally {
      stop = true;
      await load;
      for (const a of agents) a.destroy();
    }
    const metrics = (await cp.api("/metrics")).body;
    assert.match(metrics, /^wasmxds_xds_cache_miss_resends_total [1-9]\d*$/m, "the edit went through Envoy's cache-miss path and the re-send");
    assert.match(metrics, /^wasmxds_xds_nacks_total\{type="ECDS"\} 0$/m, "a cache miss is not counted as a rejection");
    assert.deepEqual(errors, [], "no request failed at the connection level");
    assert.deepEqual([...statuses.keys()], [200], `status counts: ${JSON.stringify([...statuses])}`);
    assert.ok(total > 500, `load actually ran (${total} requests)`);
  });

  it("disable and enable switch a filter live without touching the listener or the connection", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let sockets = 0;
    const created = agent.createConnection.bind(agent);
    agent.createConnection = (...args: Parameters<typeof created>) => {
      sockets++;
      return created(...args);
    };
    const viaKeptConnection = (): Promise<HttpResponse> => get(agent);
    const listenerModified = await envoy.stat("listener_manager.listener_modified");
    try {
      assert.equal(echoed(await viaKeptConnection()).headers["x-wasm-processed"], "yes");
      const off = await cp.api("/api/filters/add-header/disable", "POST");
      assert.equal(off.status, 200, off.body);
      assert.equal((JSON.parse(off.body) as { enabled: boolean }).enabled, false);
      await waitFor(async () => echoed(await viaKeptConnection()).headers["x-wasm-processed"] === undefined, { what: "add-header to stop running", timeoutMs: 20_000, details });
      const offRes = await viaKeptConnection();
      assert.equal(offRes.headers["x-wasm-filter"], undefined);
      assert.equal(echoed(offRes).headers["x-stamp"], "v2", "other filters keep running");

      const on = await cp.api("/api/filters/add-header/enable", "POST");
      assert.equal(on.status, 200, on.body);
      await waitFor(async () => echoed(await viaKeptConnection()).headers["x-wasm-processed"] === "yes", { what: "add-header to run again", timeoutMs: 20_000, details });
      assert.equal(sockets, 1, "every request used the one kept-alive connection");
      assert.equal(await envoy.stat("listener_manager.listener_modified"), listenerModified, "no LDS update (which would drain)");
      assert.equal((await cp.api("/api/filters/nope/disable", "POST")).status, 404);
      assert.equal((await cp.api("/api/filters/Bad%20Name/enable", "POST")).status, 400);
    } finally {
      agent.destroy();
    }
    const persisted = JSON.parse(fs.readFileSync(stateFile, "utf8")) as { filters: Record<string, { enabled?: boolean }> };
    assert.equal(persisted.filters["add-header"]?.enabled, true, "the choice is persisted");
  });

  it("a broken edit is never pushed: the last good module keeps serving and the API shows the error", async () => {
    const before = await cp.filter("stamp");
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampFilter("stamp_root", "v3", "let broken: i32 = notDefinedAnywhere;"));
    const failed = await waitFor(async () => {
      const f = await cp.filter("stamp");
      return f?.status === "error" ? f : undefined;
    }, { what: "the broken build to be reported", timeoutMs: 30_000, details });
    assert.match(failed.error ?? "", /notDefinedAnywhere/);
    assert.match(failed.error ?? "", /index\.ts\(\d+,\d+\)|index\.ts:\d+/, "the error names the file and line");
    assert.equal(failed.sha256, before?.sha256, "the last good module is still the one announced");
    const r = await get();
    assert.equal(r.status, 200);
    assert.equal(echoed(r).headers["x-stamp"], "v2", "Envoy still runs the last good module");
    // Fixing the source recovers.
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampFilter("stamp_root", "v2"));
    await waitFor(async () => (await cp.filter("stamp"))?.status === "ok", { what: "the fixed build", timeoutMs: 30_000, details });
    assert.equal((await cp.filter("stamp"))?.sha256, before?.sha256, "same source, same module");
  });

  it("rapid successive saves converge to the last one", async () => {
    const file = path.join(filtersDir, "stamp", "index.ts");
    for (const v of ["v3", "v4", "v5", "v6", "v7"]) fs.writeFileSync(file, stampFilter("stamp_root", v));
    await until("the last of five rapid saves (v7) to be live", (x) => x.status === 200 && echoed(x).headers["x-stamp"] === "v7", 60_000);
    await waitFor(async () => (await cp.filter("stamp"))?.status === "ok", { what: "no build pending", timeoutMs: 30_000, details });
    const r = await get();
    assert.equal(echoed(r).headers["x-stamp"], "v7", "a late build of an earlier save never overrides the last one");
  });

  it("SIGKILL leaves Envoy serving; after a restart Envoy reconnects and creates no new Wasm VM", async () => {
    await waitFor(async () => {
      const [c] = await cp.clients();
      return c && Object.values(c.types).every((t) => t.ackedVersion !== null && t.ackedVersion === t.sentVersion);
    }, { what: "Envoy to ACK everything before the kill", timeoutMs: 20_000, details });
    const versionsBefore = Object.fromEntries(Object.entries((await cp.clients())[0]!.types).map(([k, t]) => [k, t.ackedVersion]));
    const vmsCreated = await envoy.stat("wasm.envoy.wasm.runtime.v8.created");
    assert.ok(vmsCreated !== undefined && vmsCreated > 0, "the VM-created stat exists");

    await cp.kill("SIGKILL");
    // Per-type services have no ADS connected_state; the xDS cluster's connections tell for both.
    await waitFor(async () => (await envoy.stat("cluster.xds_cluster.upstream_cx_active")) === 0, { what: "Envoy to notice the control plane is gone", timeoutMs: 30_000, details });
    for (let i = 0; i < 20; i++) {
      const r = await get();
      assert.equal(r.status, 200);
      assert.equal(echoed(r).headers["x-wasm-processed"], "yes");
      assert.equal(echoed(r).headers["x-stamp"], "v7");
    }

    cp = await startControlPlane({ ports, filtersDir, stateFile, upstreamPort: echo.port, workDir, name: "controlplane-restarted" });
    await waitFor(async () => {
      const [c] = await cp.clients();
      return c && Object.keys(c.types).length === Object.keys(versionsBefore).length && Object.values(c.types).every((t) => t.ackedVersion !== null);
    }, { what: "Envoy to reconnect and resubscribe to every type it had", timeoutMs: 60_000, details: async () => `clients: ${JSON.stringify(await cp.clients())}\n${details()}` });
    const versionsAfter = Object.fromEntries(Object.entries((await cp.clients())[0]!.types).map(([k, t]) => [k, t.ackedVersion]));
    assert.deepEqual(versionsAfter, versionsBefore, "the restarted control plane computed identical versions");
    assert.ok(((await envoy.stat("cluster.xds_cluster.upstream_cx_active")) ?? 0) > 0, "Envoy is connected again");
    assert.equal(await envoy.stat("wasm.envoy.wasm.runtime.v8.created"), vmsCreated, "no Wasm VM was created on reconnect");
    const r = await get();
    assert.equal(echoed(r).headers["x-stamp"], "v7");
  });
});
