// Filters per route and per host (issue 15 part 2), through a real Envoy on loopback: a routes
// file with two virtual hosts; filter A only on route `api` (its filter.json's targets), filter B
// only on host `b.example` (the API's); retargeting under load with zero failed requests, no new
// Wasm VM and no listener change; a route's own configuration on that route only.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { copyFilters } from "../support/controlplane.ts";
import { httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

/** A filter that adds `x-<id>: <its configuration, or "on">` to responses. */
function markFilter(id: string): string {
  return `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { readPluginConfiguration } from "../_lib/config";

class MarkRoot extends RootContext {
  configValue: string = "";
  createContext(context_id: u32): Context { return new Mark(context_id, this); }
  onConfigure(configuration_size: u32): bool {
    this.configValue = readPluginConfiguration(configuration_size);
    return true;
  }
}

class Mark extends Context {
  configValue: string;
  constructor(context_id: u32, root: MarkRoot) { super(context_id, root); this.configValue = root.configValue; }
  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-${id}", this.configValue.length > 0 ? this.configValue : "on");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new MarkRoot(context_id), "${id}");
`;
}

const VM_CREATED = "wasm.envoy.wasm.runtime.v8.created";
const VM_ACTIVE = "wasm.envoy.wasm.runtime.v8.active";

interface Where {
  host: string;
  path: string;
}
const A_API: Where = { host: "a.example", path: "/api/x" };
const A_WEB: Where = { host: "a.example", path: "/web" };
const B_API: Where = { host: "b.example", path: "/api/x" };
const B_ROOT: Where = { host: "b.example", path: "/" };
const ALL = [A_API, A_WEB, B_API, B_ROOT];

describe("filters per route and per host (real Envoy, routes file)", { timeout: 300_000 }, () => {
  let stack: Stack;
  let workDir: string;
  const details = (): string => stack.details();
  const get = (w: Where, agent?: http.Agent): Promise<HttpResponse> =>
    httpRequest(`http://127.0.0.1:${stack.ports.listener}${w.path}`, { headers: { host: w.host }, ...(agent ? { agent } : {}) });
  /** Which of mark-a / mark-b ran on each place, as "a=<value>,b=<value>" (- when absent). */
  const marks = async (w: Where): Promise<string> => {
    const r = await get(w);
    if (r.status !== 200) return `status ${r.status}`;
    return `a=${String(r.headers["x-mark-a"] ?? "-")},b=${String(r.headers["x-mark-b"] ?? "-")}`;
  };
  const matrix = async (): Promise<string[]> => Promise.all(ALL.map(async (w) => `${w.host}${w.path} ${await marks(w)}`));
  const until = async (what: string, expected: string[], timeoutMs = 30_000): Promise<void> => {
    let last: string[] = [];
    await waitFor(async () => {
      last = await matrix();
      return JSON.stringify(last) === JSON.stringify(expected);
    }, { what, timeoutMs, details: () => `last seen:\n  ${last.join("\n  ")}\n${details()}`, signal: stack.envoy.exitSignal });
  };
  const api = async (method: string, p: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const r = await httpRequest(`${stack.cp.adminUrl}${p}`, {
      method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } } : {}),
    });
    return { status: r.status, json: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : {} };
  };
  const expectOk = async (method: string, p: string, body?: unknown): Promise<Record<string, unknown>> => {
    const r = await api(method, p, body);
    assert.equal(r.status, 200, `${method} ${p}: ${JSON.stringify(r.json)}`);
    return r.json;
  };

  before(async () => {
    workDir = makeWorkDir("route-targets");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    for (const id of ["mark-a", "mark-b"]) {
      fs.mkdirSync(path.join(filtersDir, id));
      fs.writeFileSync(path.join(filtersDir, id, "index.ts"), markFilter(id));
    }
    // A's author says "only on the api route" in its manifest.
    fs.writeFileSync(path.join(filtersDir, "mark-a", "filter.json"), JSON.stringify({ order: 20, targets: { routes: ["api"] } }));
    fs.writeFileSync(path.join(filtersDir, "mark-b", "filter.json"), JSON.stringify({ order: 30 }));
    // The upstream's port is known only once the stack starts it: the file names a placeholder
    // upstream first and is rewritten below (a routes-file edit goes live like any other).
    const routesFile = path.join(workDir, "routes.yaml");
    fs.writeFileSync(routesFile, routesYaml(1));
    // A short drain: the per-route configuration case waits for the old listener to go.
    stack = await startStack({ workDir, filtersDir, cpEnv: { CP_ROUTES_FILE: routesFile }, envoy: { extraArgs: ["--drain-time-s", "1"] } });
    fs.writeFileSync(routesFile, routesYaml(stack.echo.port));
  });

  after(async () => {
    await stack?.stop();
  });

  it("a filter.json target runs A only on route api; B (untargeted) everywhere", async () => {
    await until("A on api only, B everywhere", [
      "a.example/api/x a=on,b=on", "a.example/web a=-,b=on", "b.example/api/x a=-,b=on", "b.example/ a=-,b=on",
    ], 90_000);
    const a = (await stack.cp.filter("mark-a"))!;
    assert.deepEqual(a.targets, { clusters: [], nodes: [], routes: ["api"], hosts: [] });
    assert.equal(a.targetsFrom, "manifest");
  });

  it("PUT targets: B only on host b.example; unknown routes and hosts are refused with the known ones", async () => {
    const bad = await api("PUT", "/api/filters/mark-b/targets", { routes: ["nope"], hosts: ["c.example"] });
    assert.equal(bad.status, 400);
    assert.match(String(bad.json.error),
      /unknown route "nope"; unknown host "c.example" \(routes: api, b-all, web; virtual hosts: a \(a.example, \*\); b \(b.example\)\)/);
    assert.equal((await stack.cp.filter("mark-b"))!.targets, null, "nothing changed");
    await expectOk("PUT", "/api/filters/mark-b/targets", { hosts: ["b.example"] });
    await until("B only on b.example", [
      "a.example/api/x a=on,b=-", "a.example/web a=-,b=-", "b.example/api/x a=-,b=on", "b.example/ a=-,b=on",
    ]);
  });

  it("the filter detail says on which routes and hosts it runs, per Envoy", async () => {
    const placed = async (name: string): Promise<string> => {
      const d = await expectOk("GET", `/api/filters/${name}`);
      type Placed = { host: string; route: string; configuration: string };
      const envoys = d.envoys as { node: string; inChain: boolean; routes: Placed[] | null }[];
      const routes = (rs: Placed[] | null): string => (rs ?? []).map((r) => `${r.host}/${r.route}/${r.configuration}`).join(",");
      return envoys.map((e) => `${e.node}:${e.inChain}:${routes(e.routes)}`).join(";");
    };
    const node = (await stack.cp.clients())[0]!.node.id;
    await waitFor(
      async () => (await placed("mark-a")) === `${node}:true:a/api/filter` && (await placed("mark-b")) === `${node}:true:b/b-all/filter`,
      { what: "placements from the ACKed routes", timeoutMs: 10_000, details: async () => `${await placed("mark-a")} | ${await placed("mark-b")}` },
    );
    assert.equal(await placed("add-header"), `${node}:true:a/api/filter,a/web/filter,b/b-all/filter`);
  });

  it("retargeting under load: zero failed requests, no Wasm VM created, no listener change", async () => {
    const vmsBefore = await stack.envoy.stat(VM_CREATED);
    const listenerBefore = await stack.envoy.stat("listener_manager.listener_modified");
    assert.ok(vmsBefore !== undefined && vmsBefore > 0, `${VM_CREATED} exists`);
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const agents = [0, 1, 2, 3].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const worker = async (agent: http.Agent, i: number): Promise<void> => {
      // Bounded: at most 3000 requests per worker, and it stops when the retargeting is done.
      for (let n = 0; n < 3000 && !stop; n++) {
        const w = ALL[(i + n) % ALL.length]!;
        try {
          const r = await get(w, agent);
          if (r.status === 200) ok++;
          else failures.push(`${w.host}${w.path}: ${r.status}`);
        } catch (err) {
          failures.push(`${w.host}${w.path}: ${(err as Error).message}`);
        }
      }
    };
    const load = Promise.all(agents.map((a, i) => worker(a, i)));
    try {
      await waitFor(() => ok > 100, { what: "load to start", timeoutMs: 10_000, details });
      await expectOk("PUT", "/api/filters/mark-a/targets", { routes: ["web"] });
      await until("A moved to route web", [
        "a.example/api/x a=-,b=-", "a.example/web a=on,b=-", "b.example/api/x a=-,b=on", "b.example/ a=-,b=on",
      ]);
      await expectOk("PUT", "/api/filters/mark-a/targets", { hosts: ["b"] });
      await until("A on virtual host b (named by its name)", [
        "a.example/api/x a=-,b=-", "a.example/web a=-,b=-", "b.example/api/x a=on,b=on", "b.example/ a=on,b=on",
      ]);
      await expectOk("PUT", "/api/filters/mark-b/targets", {});
      await expectOk("DELETE", "/api/filters/mark-a/targets");
      await until("A back to its manifest's route api, B everywhere", [
        "a.example/api/x a=on,b=on", "a.example/web a=-,b=on", "b.example/api/x a=-,b=on", "b.example/ a=-,b=on",
      ]);
      // A few hundred more requests on the final routes before the load stops.
      const target = ok + 200;
      await waitFor(() => ok >= target || failures.length > 0,
        { what: "200 more requests after the last retarget", timeoutMs: 30_000, details });
    } finally {
      stop = true;
      await load;
      for (const a of agents) a.destroy();
    }
    assert.deepEqual(failures, [], "no failed request");
    assert.ok(ok > 200, `load ran (${ok} requests)`);
    assert.equal(await stack.envoy.stat(VM_CREATED), vmsBefore, "no Wasm VM created by retargeting");
    assert.equal(await stack.envoy.stat("listener_manager.listener_modified"), listenerBefore, "the listener never changed (RDS only)");
  });

  it("a target on a route that vanishes runs nowhere and is listed as unknown; nothing crashes", async () => {
    await expectOk("PUT", "/api/filters/mark-b/targets", { routes: ["web"] });
    await until("B on web", ["a.example/api/x a=on,b=-", "a.example/web a=-,b=on", "b.example/api/x a=-,b=-", "b.example/ a=-,b=-"]);
    const routesFile = path.join(workDir, "routes.yaml");
    fs.writeFileSync(routesFile, routesYaml(stack.echo.port).replace("name: web", "name: site"));
    await until("web renamed site: B nowhere", [
      "a.example/api/x a=on,b=-", "a.example/web a=-,b=-", "b.example/api/x a=-,b=-", "b.example/ a=-,b=-",
    ]);
    const d = await expectOk("GET", "/api/filters/mark-b");
    assert.deepEqual(d.unknownTargets, { routes: ["web"], hosts: [] });
    fs.writeFileSync(routesFile, routesYaml(stack.echo.port));
    await until("web back: B on it again", [
      "a.example/api/x a=on,b=-", "a.example/web a=-,b=on", "b.example/api/x a=-,b=-", "b.example/ a=-,b=-",
    ]);
    await expectOk("PUT", "/api/filters/mark-b/targets", {});
  });

  it("a route's own configuration runs on that route only, in the filter's VM", async () => {
    await expectOk("PUT", "/api/filters/mark-a/targets", {});
    await until("A and B everywhere", ALL.map((w) => `${w.host}${w.path} a=on,b=on`));
    const unknown = await api("PUT", "/api/filters/mark-a/routes/nope/configuration", { configuration: "x" });
    assert.equal(unknown.status, 400);
    assert.match(String(unknown.json.error), /unknown route "nope"/);
    const activeBefore = await stack.envoy.stat(VM_ACTIVE);
    const set = await expectOk("PUT", "/api/filters/mark-a/routes/api/configuration", { configuration: "api-only" });
    assert.deepEqual(set.routeConfigurations, { api: "api-only" });
    await until("A with api-only on route api, its own configuration elsewhere", [
      "a.example/api/x a=api-only,b=on", "a.example/web a=on,b=on", "b.example/api/x a=on,b=on", "b.example/ a=on,b=on",
    ]);
    // The slot is a listener change: once the old listener has drained (--drain-time-s 1), as many
    // VMs are alive as before. The slot runs as one more root context in the filter's VMs (Envoy
    // creates one short-lived "canary" VM to check a new plugin configuration; it is not kept).
    let seen: string = "";
    await waitFor(async () => {
      const draining = await stack.envoy.stat("listener_manager.total_listeners_draining");
      const active = await stack.envoy.stat(VM_ACTIVE);
      seen = `draining ${String(draining)}, active ${String(active)} (before ${String(activeBefore)})`;
      return (draining ?? 0) === 0 && active === activeBefore;
    }, {
      what: "the slot to share the filter's VMs (active VMs back to the count before)", timeoutMs: 30_000,
      details: () => `${seen}\n${details()}`,
    });
    const d = await expectOk("GET", "/api/filters/mark-a");
    const routes = (d.envoys as { routes: { route: string; configuration: string }[] }[])[0]!.routes;
    assert.deepEqual(routes.map((r) => `${r.route}/${r.configuration}`), ["api/route", "web/filter", "b-all/filter"]);
    // Changing it is an ECDS update of the slot: no listener change (so pre-declared slots would avoid every drain).
    const listenerBefore = await stack.envoy.stat("listener_manager.listener_modified");
    await expectOk("PUT", "/api/filters/mark-a/routes/api/configuration", { configuration: "api-two" });
    await until("the slot's new configuration", [
      "a.example/api/x a=api-two,b=on", "a.example/web a=on,b=on", "b.example/api/x a=on,b=on", "b.example/ a=on,b=on",
    ]);
    const listenerAfter = await stack.envoy.stat("listener_manager.listener_modified");
    assert.equal(listenerAfter, listenerBefore, "a slot's configuration change is ECDS only");
    await expectOk("DELETE", "/api/filters/mark-a/routes/api/configuration");
    await until("the filter's own configuration everywhere again", ALL.map((w) => `${w.host}${w.path} a=on,b=on`));
    assert.equal((await api("DELETE", "/api/filters/mark-a/routes/api/configuration")).status, 404);
  });
});

/** Two virtual hosts: a (a.example and any other host) with routes api and web; b (b.example). */
function routesYaml(echoPort: number): string {
  return `upstreams:
  echo:
    endpoints: ["127.0.0.1:${echoPort}"]
virtual_hosts:
  - name: a
    domains: ["a.example", "*"]
    routes:
      - name: api
        prefix: /api
        upstream: echo
      - name: web
        prefix: /
        upstream: echo
  - name: b
    domains: ["b.example"]
    routes:
      - name: b-all
        prefix: /
        upstream: echo
`;
}
