// Capabilities, failure policy and the module size cap, end to end with the real Envoy:
// - a filter that calls proxy_http_call without declaring "http_call" is denied by Envoy (the
//   call returns InternalFailure and Envoy logs the restricted capability); declaring it in
//   filter.json while everything runs grants it (new VMs, same module);
// - each fail policy reaches Envoy as PluginConfig.failure_policy and is accepted (no NACK);
// - a build over CP_MAX_MODULE_BYTES is refused with the reason in the API while the previous
//   module keeps serving; an oversize upload gets 413 with the reason.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { ControlPlanePorts, ControlPlaneProcess, FilterView } from "../support/controlplane.ts";
import type { EchoUpstream } from "../support/echo.ts";
import type { EnvoyProcess } from "../support/envoy.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";
import { startStack, type Stack } from "../support/stack.ts";

const PROBE = "capability-probe";
const WASM_OK = "0";
const WASM_INTERNAL_FAILURE = "10";
/** Unoptimised builds here are ~30 KiB; the padded source below builds to several hundred. */
const MAX_MODULE_BYTES = 150_000;

describe("capabilities, failure policy and size cap through a real Envoy", { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let stack: Stack | undefined;
  let ports: ControlPlanePorts;

  const details = (): string => `--- envoy\n${envoy?.tail(30)}\n--- control plane\n${cp?.tail(30)}`;
  const through = (): Promise<HttpResponse> => httpGet(`http://127.0.0.1:${ports.listener}/headers`);
  const until = (what: string, ok: (r: HttpResponse) => boolean): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await through();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs: 30_000, details });
  const view = async (name: string): Promise<FilterView> => {
    const r = await cp.api(`/api/filters/${name}`);
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as FilterView;
  };
  /** The PluginConfig Envoy holds for a filter, from admin /config_dump?resource=ecds_filters. */
  const pluginInEnvoy = async (name: string): Promise<Record<string, unknown> | undefined> => {
    const dump = await envoy.configDump("ecds_filters");
    for (const c of dump.configs as { ecds_filter?: { name?: string; typed_config?: { config?: Record<string, unknown> } } }[]) {
      if (c.ecds_filter?.name === name) return c.ecds_filter.typed_config?.config;
    }
    return undefined;
  };
  const writeManifest = (name: string, manifest: object): void => {
    fs.writeFileSync(path.join(filtersDir, name, "filter.json"), JSON.stringify(manifest));
  };

  before(async () => {
    workDir = makeWorkDir("capabilities");
    filtersDir = path.join(workDir, "filters");
    fs.mkdirSync(filtersDir);
    fs.cpSync(repoPath("filters", "_lib"), path.join(filtersDir, "_lib"), { recursive: true });
    fs.cpSync(repoPath("filters", "add-header"), path.join(filtersDir, "add-header"), { recursive: true });
    fs.cpSync(repoPath("test", "fixtures", "filters", PROBE), path.join(filtersDir, PROBE), { recursive: true });
    writeManifest(PROBE, { order: 20 });
    stack = await startStack({ workDir, filtersDir, cpEnv: { CP_MAX_MODULE_BYTES: String(MAX_MODULE_BYTES) }, bootstrap: { nodeId: "envoy-caps", nodeCluster: "caps" } });
    ({ ports, echo, cp, envoy } = stack);
  });

  after(async () => {
    await stack?.stop();
  });

  it("Envoy denies an undeclared capability; the API warns about the import", async () => {
    const r = await until("both filters running", (x) => x.status === 200 && x.headers["x-probe-http-call"] !== undefined && x.headers["x-wasm-filter"] === "add-header");
    assert.equal(r.headers["x-probe-http-call"], WASM_INTERNAL_FAILURE, "proxy_http_call answered by Envoy's restricted-capability stub");
    await waitFor(() => envoy.tail(400).includes("Attempted call to restricted proxy-wasm capability: proxy_http_call"), { what: "Envoy logs the denied call", timeoutMs: 10_000, details });

    const f = await view(PROBE);
    assert.deepEqual(f.capabilities?.declared, []);
    assert.deepEqual(f.capabilities?.undeclaredImports, [{ import: "env.proxy_http_call", group: "http_call" }]);
    assert.ok(!f.capabilities?.granted.includes("proxy_http_call"));

    const plugin = await pluginInEnvoy(PROBE);
    const allowed = Object.keys((plugin?.capability_restriction_config as { allowed_capabilities?: object } | undefined)?.allowed_capabilities ?? {});
    assert.ok(allowed.length > 0, "never an empty (= allow-all) map");
    assert.ok(allowed.includes("proxy_on_request_headers") && allowed.includes("proxy_get_property"), allowed.join());
    assert.ok(!allowed.includes("proxy_http_call"));
    // The good filter beside it is unaffected, and has nothing undeclared.
    assert.deepEqual((await view("add-header")).capabilities?.undeclaredImports, []);
  });

  it("declaring the capability in filter.json while running grants it (new VMs, same module)", async () => {
    const before = await view(PROBE);
    const calls = echo.requests;
    writeManifest(PROBE, { order: 20, capabilities: ["http_call"] });
    const r = await until("x-probe-http-call: 0", (x) => x.headers["x-probe-http-call"] === WASM_OK);
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-wasm-filter"], "add-header");
    const f = await view(PROBE);
    assert.equal(f.sha256, before.sha256, "same module bytes: only the grant changed");
    assert.deepEqual(f.capabilities?.declared, ["http_call"]);
    assert.deepEqual(f.capabilities?.undeclaredImports, []);
    const allowed = Object.keys((await pluginInEnvoy(PROBE))?.capability_restriction_config as object ?? {});
    assert.ok(allowed.length > 0);
    await waitFor(() => echo.requests > calls + 1, { what: "the probe's HTTP call reached the upstream", timeoutMs: 10_000, details });
  });

  it("an unknown capability in filter.json is a build error naming the allowed ones; the running module stays", async () => {
    const sha = (await view(PROBE)).sha256;
    writeManifest(PROBE, { order: 20, capabilities: ["http_call", "sockets"] });
    const f = await waitFor(async () => {
      const v = await view(PROBE);
      return v.status === "error" ? v : undefined;
    }, { what: "manifest error in the API", timeoutMs: 20_000, details });
    assert.match(f.error ?? "", /capabilities.*allowed: http_call, grpc, .*unknown: "sockets"/);
    assert.equal(f.sha256, sha);
    assert.equal((await through()).headers["x-probe-http-call"], WASM_OK, "the last good module keeps serving");
    writeManifest(PROBE, { order: 20, capabilities: ["http_call"] });
    await waitFor(async () => (await view(PROBE)).status === "ok", { what: "probe builds again", timeoutMs: 20_000, details });
  });

  it("each fail policy reaches Envoy as failure_policy and is accepted, never with fail_open", async () => {
    for (const [policy, expected] of [["reload", "FAIL_RELOAD"], ["open", "FAIL_OPEN"], ["closed", "FAIL_CLOSED"]] as const) {
      const res = await httpRequest(`${cp.adminUrl}/api/filters/${PROBE}/fail-policy`, { method: "PUT", body: JSON.stringify({ failPolicy: policy }), headers: { "content-type": "application/json" } });
      assert.equal(res.status, 200, res.body);
      assert.equal((JSON.parse(res.body) as FilterView).failPolicy, policy);
      const plugin = await waitFor(async () => {
        const p = await pluginInEnvoy(PROBE);
        return p?.failure_policy === expected ? p : undefined;
      }, { what: `failure_policy ${expected} in Envoy's ECDS config`, timeoutMs: 20_000, details });
      assert.equal(plugin.fail_open, undefined);
      // Envoy shows only configs it applied; and it ACKed the newest ECDS version it was sent.
      await waitFor(async () => (await cp.clients()).every((c) => Object.values(c.types).every((t) => t.short !== "ECDS" || (t.sentVersion !== null && t.sentVersion === t.ackedVersion))), { what: "ECDS ACKed", timeoutMs: 20_000, details });
      const r = await through();
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-probe-http-call"], WASM_OK);
    }
    const bad = await httpRequest(`${cp.adminUrl}/api/filters/${PROBE}/fail-policy`, { method: "PUT", body: JSON.stringify({ failPolicy: "retry" }), headers: { "content-type": "application/json" } });
    assert.equal(bad.status, 400);
  });

  it("a build over CP_MAX_MODULE_BYTES is refused with the reason in the API; the previous module keeps serving", async () => {
    const before = await view("add-header");
    const source = fs.readFileSync(path.join(filtersDir, "add-header", "index.ts"), "utf8");
    // A large string constant lands in the module's data segment.
    const padded = `${source}\nexport const PADDING: string = "${"x".repeat(MAX_MODULE_BYTES)}";\n`;
    fs.writeFileSync(path.join(filtersDir, "add-header", "index.ts"), padded);
    const f = await waitFor(async () => {
      const v = await view("add-header");
      return v.status === "error" ? v : undefined;
    }, { what: "size cap error in the API", timeoutMs: 30_000, details });
    assert.match(f.error ?? "", new RegExp(`^add-header: module is \\d+ bytes \\(.*\\), over the ${MAX_MODULE_BYTES} bytes \\(.*\\) limit \\(CP_MAX_MODULE_BYTES\\)$`));
    assert.equal(f.sha256, before.sha256, "nothing new announced");
    const r = await through();
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-wasm-filter"], "add-header", "the previous module keeps serving");
    fs.writeFileSync(path.join(filtersDir, "add-header", "index.ts"), source);
    await waitFor(async () => (await view("add-header")).status === "ok", { what: "add-header builds again", timeoutMs: 30_000, details });
  });

  it("a build importing a function Envoy does not provide is refused with the reason in the API", async () => {
    const before = await view("add-header");
    const source = fs.readFileSync(path.join(filtersDir, "add-header", "index.ts"), "utf8");
    // Math.random makes asc import env.seed, which no Envoy provides.
    fs.writeFileSync(path.join(filtersDir, "add-header", "index.ts"), source.replace('"x-wasm-processed", "yes"', '"x-wasm-processed", Math.random().toString()'));
    const f = await waitFor(async () => {
      const v = await view("add-header");
      return v.status === "error" ? v : undefined;
    }, { what: "import validation error in the API", timeoutMs: 30_000, details });
    assert.match(f.error ?? "", /^add-header: imports env\.seed, which Envoy does not provide \(Math\.random\?\)/);
    assert.equal(f.sha256, before.sha256, "nothing new announced");
    assert.equal((await through()).headers["x-wasm-filter"], "add-header", "the previous module keeps serving");
    fs.writeFileSync(path.join(filtersDir, "add-header", "index.ts"), source);
    await waitFor(async () => (await view("add-header")).status === "ok", { what: "add-header builds again", timeoutMs: 30_000, details });
  });

  it("an oversize upload gets 413 with the reason; unknown upload capabilities 400", async () => {
    const big = Buffer.alloc(MAX_MODULE_BYTES + 1);
    const res = await httpRequest(`${cp.adminUrl}/api/filters/uploaded/module`, { method: "PUT", body: big, headers: { "content-type": "application/wasm" } });
    assert.equal(res.status, 413);
    assert.match((JSON.parse(res.body) as { error: string }).error, new RegExp(`module is ${MAX_MODULE_BYTES + 1} bytes .*over the ${MAX_MODULE_BYTES} bytes .*CP_MAX_MODULE_BYTES`));
    const badCaps = await httpRequest(`${cp.adminUrl}/api/filters/uploaded/module?capabilities=http_call,sockets`, { method: "PUT", body: Buffer.from([0]), headers: { "content-type": "application/wasm" } });
    assert.equal(badCaps.status, 400);
    assert.match((JSON.parse(badCaps.body) as { error: string }).error, /unknown capability "sockets"/);
    assert.equal((await cp.filters()).some((f) => f.name === "uploaded"), false, "nothing registered");
  });
});
