// The operator API end to end: every change goes through the real control plane to two real
// Envoys in different node clusters, and is observed through their listeners.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { copyFilters, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import type { EnvoyProcess } from "../support/envoy.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";
import { startStack, type Stack } from "../support/stack.ts";

function stampSource(version: string): string {
  return fs.readFileSync(repoPath("filters", "add-header", "index.ts"), "utf8")
    .replace(/"x-wasm-processed", "yes"/, `"x-stamp", "${version}"`)
    .replace(/"x-wasm-filter", "add-header"/, `"x-stamp-filter", "${version}"`)
    .replace(/registerRootContext\(([\s\S]*?)"add-header"\)/, 'registerRootContext($1"stamp")');
}

interface Echoed { headers: Record<string, string> }

describe("admin API through a real Envoy", { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let stack: Stack | undefined;
  let ports: ControlPlanePorts;

  const details = (): string => `--- envoy\n${envoy?.tail(20)}\n--- control plane\n${cp?.tail(30)}`;
  const through = async (): Promise<{ r: HttpResponse; h: Record<string, string> }> => {
    const r = await httpGet(`http://127.0.0.1:${ports.listener}/headers`);
    return { r, h: r.status === 200 ? (JSON.parse(r.body) as Echoed).headers : {} };
  };
  const until = (what: string, ok: (x: { r: HttpResponse; h: Record<string, string> }) => boolean) =>
    waitFor(async () => {
      const x = await through();
      return ok(x) ? x : undefined;
    }, { what, timeoutMs: 30_000, details });
  const api = async (method: string, p: string, body?: unknown, contentType = "application/json"): Promise<{ status: number; json: Record<string, unknown> }> => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const r = await httpRequest(`${cp.adminUrl}${p}`, { method, body: payload, headers: payload === undefined ? {} : { "content-type": contentType } });
    return { status: r.status, json: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : {} };
  };

  before(async () => {
    workDir = makeWorkDir("admin-api");
    filtersDir = copyFilters(path.join(workDir, "filters"));
    fs.mkdirSync(path.join(filtersDir, "stamp"));
    fs.writeFileSync(path.join(filtersDir, "stamp", "filter.json"), JSON.stringify({ order: 20 }));
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource("v1"));
    // Node id and cluster are what targeting matches on.
    stack = await startStack({ workDir, filtersDir, bootstrap: { nodeId: "envoy-edge", nodeCluster: "edge" } });
    ({ ports, cp, envoy } = stack);
  });

  after(async () => {
    await stack?.stop();
  });

  it("serves an OpenAPI document covering every route", async () => {
    const { status, json } = await api("GET", "/docs/json");
    assert.equal(status, 200);
    const paths = Object.keys(json.paths as Record<string, unknown>);
    for (const p of ["/api/filters", "/api/filters/{name}", "/api/filters/{name}/order", "/api/filters/{name}/configuration", "/api/filters/{name}/fail-policy", "/api/filters/{name}/targets", "/api/filters/{name}/rollback", "/api/filters/{name}/pin", "/api/filters/{name}/module", "/api/clients"]) {
      assert.ok(paths.includes(p), `OpenAPI documents ${p}`);
    }
  });

  it("rejects bad input with a 4xx and a reason", async () => {
    for (const [method, p, body, code] of [
      ["PUT", "/api/filters/stamp/order", { order: "first" }, 400],
      ["PUT", "/api/filters/stamp/order", { order: 1, extra: true }, 400],
      ["PUT", "/api/filters/nope/order", { order: 1 }, 404],
      ["PUT", "/api/filters/Bad%20Name/order", { order: 1 }, 400],
      ["PUT", "/api/filters/stamp/fail-policy", { failPolicy: "maybe" }, 400],
      ["POST", "/api/filters/stamp/rollback", { sha256: "0".repeat(64) }, 404],
      ["POST", "/api/filters/stamp/rollback", { sha256: "xyz" }, 400],
    ] as const) {
      const res = await api(method, p, body);
      assert.equal(res.status, code, `${method} ${p} ${JSON.stringify(body)}`);
      assert.equal(typeof res.json.error, "string", "with a reason");
    }
    const bad = await api("PUT", "/api/filters/stamp/module", Buffer.from("not wasm"), "application/wasm");
    assert.equal(bad.status, 400);
    assert.match(String(bad.json.error), /^stamp: /);
    const malformed = await httpRequest(`${cp.adminUrl}/api/filters/stamp/order`, { method: "PUT", body: "{", headers: { "content-type": "application/json" } });
    assert.equal(malformed.status, 400);
  });

  it("a configuration change reaches the module through ECDS, without a rebuild or a new download", async () => {
    await until("add-header running", (x) => x.h["x-wasm-processed"] === "yes");
    const sha = (await api("GET", "/api/filters/add-header")).json.sha256;
    const downloads = await envoy.stat("cluster.wasm_modules.upstream_rq_total");
    const res = await api("PUT", "/api/filters/add-header/configuration", { configuration: "hello" });
    assert.equal(res.status, 200);
    assert.equal(res.json.configuration, "hello");
    await until("x-wasm-config: hello", (x) => x.r.headers["x-wasm-config"] === "hello");
    assert.equal((await api("GET", "/api/filters/add-header")).json.sha256, sha, "same module");
    assert.equal(await envoy.stat("cluster.wasm_modules.upstream_rq_total"), downloads, "Envoy fetched nothing");
    assert.equal((await api("DELETE", "/api/filters/add-header/configuration")).status, 200);
    await until("configuration back to the manifest's (none)", (x) => x.r.status === 200 && x.r.headers["x-wasm-config"] === undefined);
  });

  it("order changes which filter runs first", async () => {
    const order = (h: Record<string, string>) => Object.keys(h).filter((k) => k === "x-stamp" || k === "x-wasm-processed").join();
    await until("add-header (10) before stamp (20)", (x) => order(x.h) === "x-wasm-processed,x-stamp");
    assert.equal((await api("PUT", "/api/filters/stamp/order", { order: 5 })).status, 200);
    await until("stamp (5) before add-header (10)", (x) => order(x.h) === "x-stamp,x-wasm-processed");
  });

  it("fail policy maps to the Wasm plugin's failure_policy", async () => {
    const res = await api("PUT", "/api/filters/stamp/fail-policy", { failPolicy: "open" });
    assert.equal(res.json.failPolicy, "open");
    await waitFor(async () => JSON.stringify(await envoy.configDump("ecds_filters")).includes('"failure_policy":"FAIL_OPEN"'), { what: "failure_policy FAIL_OPEN in Envoy's ECDS config", timeoutMs: 20_000, details });
  });

  it("targeting runs a filter only on Envoys with the named node clusters or ids", async () => {
    await until("stamp on this Envoy", (x) => x.h["x-stamp"] === "v1");
    assert.equal((await api("PUT", "/api/filters/stamp/targets", { clusters: ["internal"] })).status, 200);
    const gone = await until("stamp gone from the edge Envoy", (x) => x.r.status === 200 && x.h["x-stamp"] === undefined);
    assert.equal(gone.h["x-wasm-processed"], "yes", "untargeted filters still run");
    assert.equal((await api("PUT", "/api/filters/stamp/targets", { nodes: ["envoy-edge"] })).status, 200);
    await until("stamp back, its node named by id", (x) => x.h["x-stamp"] === "v1");
    assert.equal((await api("PUT", "/api/filters/stamp/targets", { clusters: ["edge"] })).status, 200);
    await until("stamp on, its node cluster named", (x) => x.h["x-stamp"] === "v1");
    assert.equal((await api("DELETE", "/api/filters/stamp/targets")).status, 200);
    assert.equal((await api("GET", "/api/filters/stamp")).json.targets, null);
  });

  it("rollback pins a retained module until unpinned; the API says which module each Envoy runs", async () => {
    const v1 = (await api("GET", "/api/filters/stamp")).json.sha256 as string;
    fs.writeFileSync(path.join(filtersDir, "stamp", "index.ts"), stampSource("v2"));
    await until("stamp v2", (x) => x.h["x-stamp"] === "v2");
    type Detail = { sha256: string; history: { sha256: string; current: boolean }[]; envoys: { node: string; sha256: string | null }[] };
    const detail = (await api("GET", "/api/filters/stamp")).json as unknown as Detail;
    assert.notEqual(detail.sha256, v1);
    assert.deepEqual(detail.history.map((h) => h.sha256).slice(0, 2), [detail.sha256, v1], "retained modules, newest first");
    await waitFor(async () => {
      const d = (await api("GET", "/api/filters/stamp")).json as unknown as Detail;
      return d.envoys.some((e) => e.node === "envoy-edge" && e.sha256 === d.sha256);
    }, { what: "the API to report the Envoy on v2", timeoutMs: 20_000, details });
    const clients = (await httpRequest(`${cp.adminUrl}/api/clients`)).body;
    const [client] = JSON.parse(clients) as { node: { id: string }; filters: Record<string, string | null> }[];
    assert.equal(client?.filters.stamp, detail.sha256, "/api/clients says which module each filter runs on each Envoy");

    const pinned = await api("POST", "/api/filters/stamp/rollback", { sha256: v1 });
    assert.equal(pinned.status, 200);
    assert.equal(pinned.json.pinnedSha256, v1);
    assert.equal(pinned.json.sha256, v1);
    await until("stamp rolled back to v1", (x) => x.h["x-stamp"] === "v1");
    assert.equal((await api("DELETE", "/api/filters/stamp/pin")).status, 200);
    await until("stamp back on v2", (x) => x.h["x-stamp"] === "v2");
  });

  it("a prebuilt module uploaded through the API is validated, served and pushed", async () => {
    const seed = (await api("GET", "/api/filters/add-header")).json.sha256 as string;
    const wasm = Buffer.from(await (await fetch(`http://127.0.0.1:${ports.modules}/modules/${seed}.wasm`)).arrayBuffer());
    const res = await api("PUT", "/api/filters/uploaded/module?rootId=add-header", wasm, "application/wasm");
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.sha256, seed);
    assert.equal(res.json.status, "ok");
    // Two filters now add x-wasm-filter: the seed and the uploaded copy of it.
    await until("the uploaded module running beside the seed", (x) => x.r.headers["x-wasm-filter"] === "add-header, add-header");
    const history = (await api("GET", "/api/filters/uploaded")).json.history as { source: string }[];
    assert.equal(history[0]?.source, "upload");
  });
});
