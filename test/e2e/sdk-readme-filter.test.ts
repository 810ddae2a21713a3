// The first filter most people write: the "Hello, World" of @solo-io/proxy-runtime's README, a
// root context without an onConfigure override that reads `root_context.getConfiguration()`.
// Saved unmodified as filters/<name>/index.ts next to add-header, it must build, go live and
// serve 200s in a real Envoy, with no configuration and with one set through the admin API
// (proxy-runtime 0.1.8 as published trapped in proxy_on_configure without one and every request
// through the listener got 503; vendor/proxy-runtime-0.1.8-wasmxds/CHANGES.md).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { BootstrapOpts } from "../support/bootstrap.ts";
import { copyFilters } from "../support/controlplane.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

const FIXTURE = repoPath("test", "fixtures", "filters", "sdk-readme", "index.ts");
const NAME = "hello-world";

/** The README's code block, as the SDK ships it (the vendored copy keeps the README unchanged). */
function readmeExample(): string {
  const readme = fs.readFileSync(repoPath("vendor", "proxy-runtime-0.1.8-wasmxds", "README.md"), "utf8");
  const block = /^```ts\n([\s\S]*?)^```$/m.exec(readme);
  assert.ok(block, "the README has a ```ts block");
  return block[1]!;
}

// Same four ways Envoy can talk to the control plane as test/e2e/hot-reload.test.ts.
const MODES: { label: string; bootstrap: Pick<BootstrapOpts, "apiType" | "perTypeServices"> }[] = [
  { label: "ADS, state of the world", bootstrap: { apiType: "GRPC" } },
  { label: "ADS, delta", bootstrap: { apiType: "DELTA_GRPC" } },
  { label: "per-type services, state of the world", bootstrap: { apiType: "GRPC", perTypeServices: true } },
  { label: "per-type services, delta", bootstrap: { apiType: "DELTA_GRPC", perTypeServices: true } },
];

describe("the SDK README's filter fixture", () => {
  it("is the README's example, verbatim (only a leading comment added)", () => {
    const fixture = fs.readFileSync(FIXTURE, "utf8");
    const lines = fixture.split("\n");
    const header = lines.findIndex((line) => !line.startsWith("//"));
    const code = lines.slice(header).join("\n");
    assert.equal(code, readmeExample());
    assert.doesNotMatch(code, /onConfigure/, "no onConfigure override: the runtime's own reads the configuration");
  });
});

for (const mode of MODES) describe(`the SDK README's filter in a real Envoy (${mode.label})`, { timeout: 240_000 }, () => {
  let stack: Stack;
  let listenerUrl: string;
  let filtersDir: string;

  const details = (): string => stack.details();
  const get = (): Promise<HttpResponse> => httpGet(`${listenerUrl}/headers`);
  /** Waits until a request through Envoy satisfies `ok`. */
  const until = (what: string, ok: (r: HttpResponse) => boolean, timeoutMs = 60_000): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await get();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs, details, signal: stack.envoy.exitSignal });
  const setConfiguration = async (configuration: string | null): Promise<void> => {
    const url = `${stack.cp.adminUrl}/api/filters/${NAME}/configuration`;
    const res = configuration === null
      ? await httpRequest(url, { method: "DELETE" })
      : await httpRequest(url, { method: "PUT", body: JSON.stringify({ configuration }), headers: { "content-type": "application/json" } });
    assert.equal(res.status, 200, res.body);
  };
  /** Envoy's own account of the plugin: a configure failure or trap is logged by the wasm component. */
  const assertNoWasmFailures = (): void => {
    const log = fs.readFileSync(stack.envoy.logPath, "utf8");
    assert.doesNotMatch(log, /proxy_on_configure failed|memory access out of bounds|Uncaught RuntimeError/, "Envoy logged a Wasm failure");
  };

  before(async () => {
    const workDir = makeWorkDir(`sdk-readme-${mode.bootstrap.perTypeServices ? "pertype" : "ads"}-${mode.bootstrap.apiType}`);
    filtersDir = copyFilters(path.join(workDir, "filters"));
    stack = await startStack({
      workDir, filtersDir, bootstrap: mode.bootstrap,
      envoy: { concurrency: 2, componentLogLevel: "wasm:info,config:info" },
    });
    listenerUrl = `http://127.0.0.1:${stack.ports.listener}`;
  });

  after(async () => {
    await stack?.stop();
  });

  it("saved as filters/<name>/index.ts, it builds, goes live and adds `hello: world!` with no configuration", async () => {
    await until("the seed filter to run", (r) => r.status === 200 && r.headers["x-wasm-filter"] === "add-header");
    fs.mkdirSync(path.join(filtersDir, NAME));
    fs.copyFileSync(FIXTURE, path.join(filtersDir, NAME, "index.ts"));
    const r = await until("the README filter's header", (x) => x.headers["hello"] !== undefined);
    assert.equal(r.status, 200);
    assert.equal(r.headers["hello"], "world!");
    assert.equal(r.headers["x-wasm-filter"], "add-header", "the filter beside it still runs");
    const f = await stack.cp.filter(NAME);
    assert.equal(f?.status, "ok", JSON.stringify(f));
    assert.equal(f?.configuration ?? null, null);
    // Both workers (and the VM of every worker) serve it: a handful of requests, all 200.
    for (let i = 0; i < 20; i++) {
      const x = await get();
      assert.equal(x.status, 200, `request ${i}: ${x.status} ${x.body}`);
      assert.equal(x.headers["hello"], "world!");
    }
    assertNoWasmFailures();
  });

  it("getConfiguration() returns what the admin API set, and \"\" again once it is removed", async () => {
    await setConfiguration("set-through-the-api");
    const r = await until("the configuration in the header", (x) => x.headers["hello"] === "set-through-the-api");
    assert.equal(r.status, 200);
    await setConfiguration("second value, with spaces");
    await until("the new configuration in the header", (x) => x.status === 200 && x.headers["hello"] === "second value, with spaces");
    await setConfiguration(null);
    const back = await until("no configuration again", (x) => x.headers["hello"] === "world!");
    assert.equal(back.status, 200);
    assertNoWasmFailures();
  });

  it("an edit hot-reloads: the new module goes live and no request fails during the swap", async () => {
    const file = path.join(filtersDir, NAME, "index.ts");
    const before = (await stack.cp.filter(NAME))?.sha256;
    // A bounded probe loop on loopback throughout the swap: every response must be a 200 from
    // the old or the new module.
    const failures: string[] = [];
    let stop = false;
    let sent = 0;
    const probe = (async () => {
      while (!stop && sent < 5_000) {
        sent++;
        const r = await get().catch((err: unknown) => ({ status: 0, body: String(err), headers: {} }) as unknown as HttpResponse);
        const hello = r.headers["hello"];
        if (r.status !== 200 || (hello !== "world!" && hello !== "edited!")) failures.push(`${r.status} hello=${String(hello)}`);
      }
    })();
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"hello", "world!"', '"hello", "edited!"'));
    try {
      await until("the edited module", (x) => x.status === 200 && x.headers["hello"] === "edited!");
    } finally {
      stop = true;
      await probe;
    }
    assert.notEqual((await stack.cp.filter(NAME))?.sha256, before, "a new module");
    assert.deepEqual(failures, [], `${failures.length} of ${sent} requests failed during the swap`);
    assertNoWasmFailures();
  });
});
