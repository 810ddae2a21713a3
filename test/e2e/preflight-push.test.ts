// Issue 12 part 3: nothing reaches Envoy before it has started in the control plane's in-process
// proxy-wasm host as Envoy would start it (VM start, root context, onStart, onConfigure with the
// configuration Envoy would get) and passed the filter's filter.test.json cases. A refused build
// is a build error in the API and the last good module keeps serving; a refused configuration
// change is a 400 and nothing is saved. Checked against a real Envoy: what it ACKed, what it runs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { copyFilters } from "../support/controlplane.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

const ECDS = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const NAME = "gated";

/**
 * A filter stamping `version` and its configuration on responses. onConfigure returns false for
 * the configuration "refuse" and traps (abort -> proc_exit) for "trap"; `brokenConfigure` makes it
 * trap whatever the configuration.
 */
function source(version: string, brokenConfigure = false): string {
  const broken = brokenConfigure
    ? `if (configuration != "no such configuration") throw new Error("${version}: onConfigure is broken");`
    : "";
  return `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { readPluginConfiguration } from "../_lib/config";

class GatedRoot extends RootContext {
  configValue: string = "";
  createContext(context_id: u32): Context { return new Gated(context_id, this); }
  onConfigure(configuration_size: u32): bool {
    const configuration = readPluginConfiguration(configuration_size);
    ${broken}
    if (configuration == "refuse") return false;
    if (configuration == "trap") throw new Error("gated: cannot work with configuration trap");
    this.configValue = configuration;
    return true;
  }
}

class Gated extends Context {
  configValue: string;
  constructor(context_id: u32, root: GatedRoot) { super(context_id, root); this.configValue = root.configValue; }
  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-gated", "${version}");
    stream_context.headers.response.add("x-gated-config", this.configValue);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new GatedRoot(context_id), "${NAME}");
`;
}

interface FilterDetail {
  status: string;
  error?: string;
  sha256: string | null;
  configuration: string | null;
  envoys: { node: string; sha256: string | null }[];
}

describe("pre-flight before every push, through a real Envoy", { timeout: 300_000 }, () => {
  let stack: Stack;
  let dir: string;
  const details = () => stack.details();
  const through = (): Promise<HttpResponse> => httpGet(`http://127.0.0.1:${stack.ports.listener}/headers`);
  const until = (what: string, ok: (r: HttpResponse) => boolean, timeoutMs = 60_000): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await through();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs, details });
  const detail = async (): Promise<FilterDetail> => JSON.parse((await stack.cp.api(`/api/filters/${NAME}`)).body) as FilterDetail;
  const putConfiguration = (configuration: string) => httpRequest(`${stack.cp.adminUrl}/api/filters/${NAME}/configuration`, {
    method: "PUT", body: JSON.stringify({ configuration }), headers: { "content-type": "application/json" }, timeoutMs: 30_000,
  });
  /** The ECDS version served and the one Envoy ACKed, and this filter's resource version. */
  const ecds = async () => {
    type Served = Record<string, { version: string; resources: Record<string, string> }>;
    const snapshot = JSON.parse((await stack.cp.api("/api/snapshot")).body) as Served;
    const [client] = await stack.cp.clients();
    return { served: snapshot[ECDS]?.version, resource: snapshot[ECDS]?.resources[NAME], acked: client?.types[ECDS]?.ackedVersion };
  };
  const nacks = async () => (await stack.cp.clients())
    .flatMap((c) => Object.values(c.types).filter((t) => t.lastNack !== null).map((t) => `${t.short}: ${t.lastNack!.message}`));
  /** Requests keep getting 200 with the module and configuration Envoy had. */
  const stillServing = async (version: string, configuration: string) => {
    for (let i = 0; i < 10; i++) {
      const r = await through();
      assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body.slice(0, 200)}\n${details()}`);
      assert.equal(r.headers["x-gated"], version, `request ${i} runs the last good module`);
      assert.equal(r.headers["x-gated-config"], configuration);
    }
  };
  const write = (file: string, text: string) => fs.writeFileSync(path.join(dir, file), text);

  before(async () => {
    const workDir = makeWorkDir("preflight-push");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    dir = path.join(filtersDir, NAME);
    fs.mkdirSync(dir);
    write("filter.json", JSON.stringify({ order: 20, configuration: "c1" }));
    write("index.ts", source("v1"));
    stack = await startStack({ workDir, filtersDir });
    await until("gated v1 running with its manifest's configuration",
      (r) => r.status === 200 && r.headers["x-gated"] === "v1" && r.headers["x-gated-config"] === "c1");
    // Envoy has ACKed the ECDS version that brought it.
    await waitFor(async () => {
      const v = await ecds();
      return v.served !== undefined && v.served === v.acked;
    }, { what: "Envoy to ACK the current ECDS version", timeoutMs: 30_000, details });
  });

  after(async () => {
    await stack?.stop();
  });

  it("a source edit that traps in onConfigure: a build error with the trap message; Envoy keeps the previous module", async () => {
    const before = await ecds();
    const good = await detail();
    write("index.ts", source("v2", true));
    const failed = await waitFor(async () => {
      const f = await detail();
      return f.status === "error" ? f : undefined;
    }, { what: "the trapping edit to be refused", timeoutMs: 60_000, details });
    assert.match(failed.error ?? "",
      /^gated: refused before push: module [0-9a-f]{12} \(root id "gated"\) started as Envoy would run it, with configuration "c1": /);
    assert.match(failed.error ?? "", /proxy_on_configure trapped: the module exited \(proc_exit 255\)/, "which callback trapped");
    assert.match(failed.error ?? "", /v2: onConfigure is broken/, "the module's own message");
    assert.equal(failed.sha256, good.sha256, "the last good module is still the filter's");
    await stillServing("v1", "c1");
    assert.deepEqual(await ecds(), before, "no new ECDS version: nothing pushed");
    assert.deepEqual((await detail()).envoys.map((e) => e.sha256), [good.sha256], "Envoy runs the previous module");
    assert.deepEqual(await nacks(), [], "Envoy NACKed nothing");
  });

  it("a configuration change that makes onConfigure return false or trap: 400 with the reason, nothing saved or pushed", async () => {
    // Back to v1's source: the same inputs as the last good build, nothing to push.
    write("index.ts", source("v1"));
    await waitFor(async () => (await detail()).status === "ok" || undefined, { what: "gated back to ok", timeoutMs: 60_000, details });
    const before = await ecds();
    const refused = await putConfiguration("refuse");
    assert.equal(refused.status, 400, refused.body);
    const reason = (JSON.parse(refused.body) as { error: string }).error;
    assert.match(reason, /^gated: refused before push: .* with configuration "refuse": onConfigure \(proxy_on_configure\) returned false/);
    const trapped = await putConfiguration("trap");
    assert.equal(trapped.status, 400, trapped.body);
    assert.match((JSON.parse(trapped.body) as { error: string }).error,
      /with configuration "trap": proxy_on_configure trapped: .*gated: cannot work with configuration trap/s);
    const after = await detail();
    assert.equal(after.configuration, "c1", "the configuration Envoy runs with is unchanged");
    assert.equal(after.status, "ok");
    await stillServing("v1", "c1");
    assert.deepEqual(await ecds(), before, "no new ECDS version: nothing pushed");
    assert.deepEqual(await nacks(), []);
  });

  it("a filter.test.json case that fails: a build error naming the case; Envoy keeps the previous module", async () => {
    const before = await ecds();
    write("filter.test.json", JSON.stringify({ cases: [
      { name: "stamps the manifest's configuration", expect: { response: { "x-gated-config": "c1" } } },
      { name: "stamps version 9", expect: { response: { "x-gated": "v9" } } },
    ] }));
    const failed = await waitFor(async () => {
      const f = await detail();
      return f.status === "error" ? f : undefined;
    }, { what: "the failing case to refuse the build", timeoutMs: 60_000, details });
    assert.equal(failed.error,
      'gated: refused before push: filter.test.json case "stamps version 9" failed: response header x-gated: expected "v9", got "v1"');
    await stillServing("v1", "c1");
    assert.deepEqual(await ecds(), before, "nothing pushed");
  });

  it("a good edit with passing cases, and a good configuration, still go live", async () => {
    const before = await ecds();
    write("filter.test.json", JSON.stringify({ cases: [
      { name: "stamps version 3", expect: { response: { "x-gated": "v3", "x-gated-config": "c1" } } },
      { name: "stamps its configuration", configuration: "other", expect: { response: { "x-gated-config": "other" } } },
    ] }));
    write("index.ts", source("v3"));
    await until("v3 live in Envoy", (r) => r.status === 200 && r.headers["x-gated"] === "v3" && r.headers["x-gated-config"] === "c1");
    const live = await detail();
    assert.equal(live.status, "ok");
    assert.equal(live.error, undefined);
    assert.notEqual((await ecds()).resource, before.resource, "a new ECDS resource version was pushed");
    const configured = await putConfiguration("c2");
    assert.equal(configured.status, 200, configured.body);
    await until("the new configuration live in Envoy",
      (r) => r.status === 200 && r.headers["x-gated"] === "v3" && r.headers["x-gated-config"] === "c2");
    assert.deepEqual(await nacks(), []);
  });
});
