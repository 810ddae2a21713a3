/**
 * An Envoy that keeps its own listeners and takes only our filters over ECDS
 * (envoy-bootstrap/envoy-ecds-only.yaml, docs/ecds-only.md), against the real Envoy 1.40:
 * it gets the filter, hot-reloads it under load with no failed request, disable/enable work
 * (a disabled filter reaches it as a native no-op), and it never receives LDS/RDS/CDS from us.
 * The bootstrap is the shipped file with only addresses, ports, node id and token changed.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import YAML from "yaml";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import { TEST_XDS_TOKEN } from "../support/bootstrap.ts";
import {
  allocatePorts, copyFilters, startControlPlane, type ClientView, type ControlPlanePorts, type ControlPlaneProcess,
} from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, validateConfig, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/wait.ts";

const SHIPPED = repoPath("envoy-bootstrap", "envoy-ecds-only.yaml");
const WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const NOOP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";

// The parts of the bootstrap the renderer touches.
interface SocketAddress { address: string; port_value: number }
interface ClusterDoc {
  name: string;
  type: string;
  load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: SocketAddress } } }[] }[] };
}
interface ConfigDiscoveryDoc {
  config_source: Record<string, unknown>;
  type_urls: string[];
  default_config?: Record<string, unknown>;
  apply_default_config_without_warming?: boolean;
}
interface HttpFilterDoc { name: string; config_discovery?: ConfigDiscoveryDoc; typed_config?: Record<string, unknown> }
interface BootstrapDoc {
  node: { id: string; cluster: string };
  admin: { address: { socket_address: SocketAddress } };
  dynamic_resources?: Record<string, unknown>;
  static_resources: {
    listeners: { address: { socket_address: SocketAddress }; filter_chains: { filters: { typed_config: { http_filters: HttpFilterDoc[] } }[] }[] }[];
    clusters: ClusterDoc[];
  };
}

interface RenderOpts {
  ports: ControlPlanePorts;
  upstreamPort: number;
  listenerPort: number;
  nodeId: string;
  /** How the filters' config source reaches us: the ECDS service (as shipped) or ADS. */
  source?: "ecds-grpc" | "ecds-delta" | "ads";
  /** config_discovery type_urls of every managed filter (default: the file's). */
  typeUrls?: string[];
  /** More managed filters, before the router (a name the control plane does not serve, say). */
  extraFilters?: HttpFilterDoc[];
}

/** The shipped ECDS-only bootstrap pointed at this test's loopback ports, with the test token. */
function renderEcdsOnly(opts: RenderOpts): string {
  const doc = YAML.parse(fs.readFileSync(SHIPPED, "utf8").replaceAll("__CP_XDS_TOKEN__", TEST_XDS_TOKEN)) as BootstrapDoc;
  doc.node.id = opts.nodeId;
  doc.admin.address.socket_address = { address: "127.0.0.1", port_value: 0 };
  const [listener] = doc.static_resources.listeners;
  assert.ok(listener, `${SHIPPED}: a static listener`);
  listener.address.socket_address = { address: "127.0.0.1", port_value: opts.listenerPort };
  const endpoints: Record<string, number> = { own_upstream: opts.upstreamPort, wasm_modules: opts.ports.modules, xds_cluster: opts.ports.xds };
  for (const [name, port] of Object.entries(endpoints)) {
    const cluster = doc.static_resources.clusters.find((c) => c.name === name);
    assert.ok(cluster, `${SHIPPED}: static cluster ${name}`);
    cluster.type = "STATIC";
    cluster.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address = { address: "127.0.0.1", port_value: port };
  }
  const hcm = listener.filter_chains[0]!.filters[0]!.typed_config;
  const router = hcm.http_filters.pop()!;
  hcm.http_filters.push(...(opts.extraFilters ?? []), router);
  const source = opts.source ?? "ecds-grpc";
  const shipped = hcm.http_filters.find((f) => f.config_discovery)!.config_discovery!.config_source;
  for (const f of hcm.http_filters) {
    if (!f.config_discovery) continue;
    if (opts.typeUrls) f.config_discovery.type_urls = opts.typeUrls;
    f.config_discovery.config_source = structuredClone(shipped);
    const api = f.config_discovery.config_source.api_config_source as { api_type: string };
    if (source === "ecds-delta") api.api_type = "DELTA_GRPC";
    if (source === "ads") {
      doc.dynamic_resources = { ads_config: { ...api, api_type: "GRPC" } };
      f.config_discovery.config_source = { ads: {}, resource_api_version: "V3", initial_fetch_timeout: shipped.initial_fetch_timeout };
    }
  }
  return YAML.stringify(doc);
}

/** /api/clients with the field this feature adds. */
type EcdsClientView = ClientView & { ecdsOnly: boolean };

interface Echoed {
  headers: Record<string, string>;
}
const echoed = (r: HttpResponse): Echoed => JSON.parse(r.body) as Echoed;

describe("envoy-bootstrap/envoy-ecds-only.yaml", () => {
  it("passes envoy --mode validate as shipped and as rendered for the tests", async () => {
    const shipped = await validateConfig(SHIPPED);
    assert.ok(shipped.ok, shipped.output);
    const dir = makeWorkDir("ecds-only-validate");
    const ports = { xds: 1, modules: 2, admin: 3, listener: 4 };
    for (const source of ["ecds-grpc", "ecds-delta", "ads"] as const) {
      const file = path.join(dir, `${source}.yaml`);
      fs.writeFileSync(file, renderEcdsOnly({ ports, upstreamPort: 5, listenerPort: 6, nodeId: "v", source }));
      const rendered = await validateConfig(file);
      assert.ok(rendered.ok, `${source}: ${rendered.output}`);
    }
  });
});

const MODES: { label: string; source: RenderOpts["source"] }[] = [
  { label: "ECDS service, state of the world (as shipped)", source: "ecds-grpc" },
  { label: "ECDS service, delta", source: "ecds-delta" },
  { label: "ADS, ECDS only", source: "ads" },
];

for (const mode of MODES) describe(`an ECDS-only Envoy (${mode.label})`, { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  const others: EnvoyProcess[] = [];
  let listenerUrl: string;
  const nodeId = `ecds-only-${mode.source}`;

  const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(30)}\n--- control plane\n${cp?.tail(30)}`;
  const get = (agent?: http.Agent, url = listenerUrl): Promise<HttpResponse> => httpGet(`${url}/headers`, undefined, agent);
  const client = async (node = nodeId): Promise<EcdsClientView | undefined> =>
    (await cp.clients() as EcdsClientView[]).find((c) => c.node.id === node);
  /** Waits until a request through `url` answers 200 and satisfies `ok`; any other status fails the test. */
  const until = (what: string, ok: (r: HttpResponse) => boolean, url = listenerUrl, target = envoy): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await get(undefined, url);
      assert.equal(r.status, 200, `${what}: ${r.status} ${r.body}`);
      return ok(r) ? r : undefined;
    }, { what, timeoutMs: 30_000, details, signal: target.exitSignal });
  const startOwnEnvoy = async (name: string, opts: Partial<RenderOpts> = {}): Promise<{ envoy: EnvoyProcess; url: string }> => {
    const listenerPort = opts.listenerPort ?? await freePort();
    const bootstrapYaml = renderEcdsOnly({ ports, upstreamPort: echo.port, listenerPort, nodeId: name, source: mode.source, ...opts });
    const started = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, bootstrapYaml, workDir, name, concurrency: 2 });
    return { envoy: started, url: `http://127.0.0.1:${listenerPort}` };
  };

  before(async () => {
    workDir = makeWorkDir(`ecds-only-${mode.source}`);
    filtersDir = copyFilters(path.join(workDir, "filters"));
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
    ({ envoy, url: listenerUrl } = await startOwnEnvoy(nodeId, { listenerPort: ports.listener }));
    await envoy.waitReady(30_000);
  });

  after(async () => {
    await Promise.all([envoy, ...others].map((e) => e?.stop()));
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("runs the filter it names, and is sent nothing but ECDS", async () => {
    const r = await until("add-header to run on the static listener", (x) => echoed(x).headers["x-wasm-processed"] === "yes");
    assert.equal(r.headers["x-wasm-filter"], "add-header");
    const f = await cp.filter("add-header");
    assert.match(f?.sha256 ?? "", /^[0-9a-f]{64}$/);
    assert.ok(JSON.stringify(await envoy.configDump("ecds_filters")).includes(f!.sha256!), "ecds_filters names the module");
    // Its listener, route and clusters are the bootstrap's; nothing dynamic came from us.
    for (const resource of ["dynamic_listeners", "dynamic_route_configs", "dynamic_active_clusters"]) {
      assert.deepEqual((await envoy.configDump(resource)).configs, [], `${resource} is empty`);
    }
    const statics = JSON.stringify(await envoy.configDump("static_listeners"));
    assert.match(statics, /"name":"own_listener"/);
    const c = await waitFor(async () => {
      const view = await client();
      const t = view?.types[EXTENSION_CONFIG];
      return t && t.ackedVersion !== null && t.ackedVersion === t.sentVersion ? view : undefined;
    }, { what: "the ECDS ACK", timeoutMs: 10_000, details });
    assert.deepEqual(Object.keys(c.types), [EXTENSION_CONFIG], "one subscription: ECDS");
    assert.equal(c.ecdsOnly, true);
  });

  it("an edit of the filter goes live under load with zero failed requests", async (t) => {
    const agents = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const statuses = new Map<number, number>();
    const errors: string[] = [];
    let sawNew = 0;
    let stop = false;
    let total = 0;
    const MAX_REQUESTS = 30_000;
    const worker = async (agent: http.Agent): Promise<void> => {
      while (!stop && total < MAX_REQUESTS) {
        total++;
        try {
          const r = await get(agent);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status === 200 && r.headers["x-wasm-filter"] === "add-header-v2") sawNew++;
        } catch (err) {
          errors.push(String(err));
        }
      }
    };
    const load = Promise.all(agents.map(worker));
    const file = path.join(filtersDir, "add-header", "index.ts");
    try {
      await waitFor(() => total > 200, { what: "load to start", timeoutMs: 10_000 });
      fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(`add("x-wasm-filter", "add-header")`, `add("x-wasm-filter", "add-header-v2")`));
      await waitFor(() => sawNew > 200, { what: "the edited module to serve 200 requests under load", timeoutMs: 60_000, details });
    } finally {
      stop = true;
      await load;
      for (const a of agents) a.destroy();
    }
    assert.deepEqual(errors, [], "no request failed at the connection level");
    assert.deepEqual([...statuses.keys()], [200], `status counts: ${JSON.stringify([...statuses])}`);
    assert.ok(total > 500, `load actually ran (${total} requests)`);
    t.diagnostic(`${total} requests, all 200; ${sawNew} through the edited module`);
    const c = await client();
    // A static listener is warm: the update took Envoy's cache-miss NACK, the fetch and the re-send.
    assert.ok((c?.cacheMissResends ?? 0) >= 1, `cache-miss re-sends: ${JSON.stringify(c)}`);
    assert.equal(c?.types[EXTENSION_CONFIG]?.lastNack, null, "a cache miss is not a rejection");
  });

  it("disable sends a native no-op (no VM); enable brings the filter back; nothing drains", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let sockets = 0;
    const created = agent.createConnection.bind(agent);
    agent.createConnection = (...args: Parameters<typeof created>) => {
      sockets++;
      return created(...args);
    };
    const kept = async (): Promise<HttpResponse> => {
      const r = await get(agent);
      assert.equal(r.status, 200, r.body);
      return r;
    };
    try {
      assert.equal(echoed(await kept()).headers["x-wasm-processed"], "yes");
      assert.ok(((await envoy.stat("wasm.wasm_vm_count")) ?? 0) > 0, "the filter runs in Wasm VMs");
      const off = await cp.api("/api/filters/add-header/disable", "POST");
      assert.equal(off.status, 200, off.body);
      await waitFor(async () => echoed(await kept()).headers["x-wasm-processed"] === undefined, { what: "add-header to stop", timeoutMs: 20_000, details });
      assert.equal((await kept()).headers["x-wasm-filter"], undefined);
      const dump = JSON.stringify(await envoy.configDump("ecds_filters"));
      assert.ok(dump.includes(NOOP_TYPE) && !dump.includes(WASM_TYPE), `ecds_filters holds the no-op: ${dump}`);
      // Measured on 1.40: the filter's VMs go (wasm_vm_count 4 -> 0; the v8 runtime's stats vanish).
      await waitFor(async () => (await envoy.stat("wasm.wasm_vm_count")) === 0, { what: "the filter's VMs to be released", timeoutMs: 20_000, details });

      const on = await cp.api("/api/filters/add-header/enable", "POST");
      assert.equal(on.status, 200, on.body);
      await waitFor(async () => echoed(await kept()).headers["x-wasm-processed"] === "yes", { what: "add-header to run again", timeoutMs: 20_000, details });
      assert.equal(sockets, 1, "every request used the one kept-alive connection");
      assert.equal(await envoy.stat("listener_manager.listener_modified"), 0, "the static listener was never modified");
      const c = await client();
      assert.equal(c?.types[EXTENSION_CONFIG]?.lastNack, null, "no NACK on the way");
      assert.equal(c?.ecdsOnly, true);
    } finally {
      agent.destroy();
    }
  });

  if (mode.source === "ecds-grpc") {
    it("without the no-op in type_urls a disable is NACKed, shown in the API, and the filter keeps running", async () => {
      const strictNode = "ecds-only-wasm-type-only";
      const strict = await startOwnEnvoy(strictNode, { typeUrls: [WASM_TYPE] });
      others.push(strict.envoy);
      await strict.envoy.waitReady(30_000);
      await until("add-header on the Wasm-only Envoy", (x) => echoed(x).headers["x-wasm-processed"] === "yes", strict.url, strict.envoy);
      assert.equal((await cp.api("/api/filters/add-header/disable", "POST")).status, 200);
      await until("add-header to stop on the first Envoy", (x) => echoed(x).headers["x-wasm-processed"] === undefined);
      const nack = await waitFor(async () => (await client(strictNode))?.types[EXTENSION_CONFIG]?.lastNack ?? undefined, {
        what: "the Wasm-only Envoy's NACK in /api/clients", timeoutMs: 20_000, details,
      });
      assert.match(nack.message, /HeaderMutation/, nack.message);
      assert.match(nack.message, /add-header is disabled.*add that type to the filter's config_discovery type_urls/, nack.message);
      const r = await get(undefined, strict.url);
      assert.equal(r.status, 200);
      assert.equal(echoed(r).headers["x-wasm-processed"], "yes", "it keeps the filter it had");
      // The NACK is that Envoy's type_urls, not a verdict on the no-op: a new ECDS-only Envoy still gets it.
      const late = await startOwnEnvoy("ecds-only-late");
      others.push(late.envoy);
      await late.envoy.waitReady(30_000);
      const lateR = await get(undefined, late.url);
      assert.equal(lateR.status, 200, lateR.body);
      assert.equal(echoed(lateR).headers["x-wasm-processed"], undefined, "the late Envoy starts with the filter disabled");

      assert.equal((await cp.api("/api/filters/add-header/enable", "POST")).status, 200);
      await until("add-header back on the late Envoy", (x) => echoed(x).headers["x-wasm-processed"] === "yes", late.url, late.envoy);
      await waitFor(async () => {
        const t = (await client(strictNode))?.types[EXTENSION_CONFIG];
        return t?.ackedVersion === t?.sentVersion && t?.ackedVersion !== null;
      }, { what: "the Wasm-only Envoy to ACK the enabled filter", timeoutMs: 20_000, details });
    });
  }
});

/**
 * What Envoy 1.40 does with a managed filter whose ECDS resource does not exist (a name the
 * control plane does not serve): the facts docs/ecds-only.md recommends bootstrap settings from.
 */
describe("an ECDS-only Envoy naming a filter the control plane does not serve", { timeout: 120_000 }, () => {
  let workDir: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  const envoys: EnvoyProcess[] = [];

  before(async () => {
    workDir = makeWorkDir("ecds-only-missing");
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    cp = await startControlPlane({
      ports, filtersDir: copyFilters(path.join(workDir, "filters")), stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir,
    });
  });
  after(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  const missing = (extra: Partial<ConfigDiscoveryDoc>): HttpFilterDoc => ({
    name: "not-served",
    config_discovery: { config_source: {}, type_urls: [WASM_TYPE, NOOP_TYPE], ...extra },
  });
  const run = async (name: string, filter: HttpFilterDoc): Promise<{ envoy: EnvoyProcess; url: string }> => {
    const listenerPort = await freePort();
    const bootstrapYaml = renderEcdsOnly({ ports, upstreamPort: echo.port, listenerPort, nodeId: name, extraFilters: [filter] });
    const envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, bootstrapYaml, workDir, name });
    envoys.push(envoy);
    return { envoy, url: `http://127.0.0.1:${listenerPort}/headers` };
  };

  it("without a default config the listener waits initial_fetch_timeout, then answers 500 through the filter", async () => {
    const { envoy, url } = await run("missing-plain", missing({}));
    const state = await envoy.serverState();
    assert.notEqual(state, "LIVE", "the listener warms while the filter has no config");
    await envoy.waitReady(30_000);
    // Measured on 1.40: LIVE ~15 s after start (the shipped initial_fetch_timeout), then 500 with no body.
    const r = await httpGet(url);
    assert.equal(r.status, 500, r.body);
  });

  it("with a no-op default applied without warming it serves at once, skipping the missing filter", async () => {
    const { envoy, url } = await run("missing-default", missing({
      default_config: { "@type": NOOP_TYPE },
      apply_default_config_without_warming: true,
    }));
    await envoy.waitReady(5_000);
    const r = await httpGet(url);
    assert.equal(r.status, 200, r.body);
    assert.equal(echoed(r).headers["x-wasm-processed"], "yes", "the served filter runs");
  });

  it("a filter that first arrives after its listener is warm (control plane down at start) still runs", async () => {
    const down = await allocatePorts();
    const listenerPort = await freePort();
    const url = `http://127.0.0.1:${listenerPort}/headers`;
    const bootstrapYaml = renderEcdsOnly({ ports: down, upstreamPort: echo.port, listenerPort, nodeId: "cp-down" });
    const envoy = await startEnvoy({ bootstrap: { xdsPort: down.xds }, bootstrapYaml, workDir, name: "cp-down" });
    envoys.push(envoy);
    await envoy.waitReady(30_000);
    assert.equal((await httpGet(url)).status, 500, "warm without the filter's config: 500");
    const late = await startControlPlane({
      ports: down, filtersDir: copyFilters(path.join(workDir, "filters-late")), stateFile: path.join(workDir, "state-late.json"),
      upstreamPort: echo.port, workDir, name: "controlplane-late",
    });
    try {
      // Without the cache-miss path on the first delivery, 1.40 ACKed the filter and ran without it (200, no header).
      await waitFor(async () => {
        const r = await httpGet(url);
        return r.status === 200 && echoed(r).headers["x-wasm-processed"] === "yes";
      }, { what: "the filter to run once the control plane is up", timeoutMs: 30_000, details: () => `${envoy.tail(20)}\n${late.tail(20)}` });
      const [view] = await late.clients() as EcdsClientView[];
      assert.equal(view?.ecdsOnly, true);
      assert.ok((view?.cacheMissResends ?? 0) >= 1, "the first delivery took the cache-miss path");
    } finally {
      await late.kill("SIGTERM");
    }
  });
});
