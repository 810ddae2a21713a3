// The proxy-runtime bindings the vendored copy fixes (vendor/proxy-runtime-0.1.8-wasmxds/CHANGES.md),
// each through a real Envoy with test/fixtures/filters/runtime-bindings: get_metric, the gRPC
// stream call and its trailing-metadata callback, and set_buffer_bytes (with get_buffer_status
// in the same module, which 0.1.8's duplicate import name made unlinkable).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

const PROBE = "runtime-bindings";
const METRIC = "wasmxds_probe_requests";

interface Echoed {
  path: string;
  headers: Record<string, string>;
}

describe("proxy-runtime bindings fixed in vendor/, through a real Envoy", { timeout: 240_000 }, () => {
  let stack: Stack;
  let listenerUrl: string;

  const details = (): string => stack.details();
  const get = (headers?: Record<string, string>): Promise<HttpResponse> => httpGet(`${listenerUrl}/headers`, headers);
  const until = (what: string, ok: (r: HttpResponse) => boolean, headers?: Record<string, string>): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await get(headers);
      return ok(r) ? r : undefined;
    }, { what, timeoutMs: 60_000, details, signal: stack.envoy.exitSignal });

  before(async () => {
    const workDir = makeWorkDir("runtime-bindings");
    const filtersDir = path.join(workDir, "filters");
    fs.mkdirSync(filtersDir);
    fs.cpSync(repoPath("test", "fixtures", "filters", PROBE), path.join(filtersDir, PROBE), { recursive: true });
    stack = await startStack({ workDir, filtersDir, envoy: { componentLogLevel: "wasm:info" } });
    listenerUrl = `http://127.0.0.1:${stack.ports.listener}`;
    await until("the probe filter to run", (r) => r.status === 200 && r.headers["x-probe-metric"] !== undefined);
    const f = await stack.cp.filter(PROBE);
    assert.equal(f?.status, "ok", JSON.stringify(f));
    assert.deepEqual(f?.capabilities?.undeclaredImports, [], "every import the probe makes is granted");
  });

  after(async () => {
    await stack?.stop();
  });

  it("get_metric reads back the counter the filter increments, as Envoy's stats show it", async () => {
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await get();
      assert.equal(r.status, 200);
      const value = r.headers["x-probe-metric"];
      assert.match(String(value), /^\d+$/, `x-probe-metric: ${String(value)}`);
      seen.push(Number(value));
    }
    // One increment per request, read back right after it: consecutive values.
    const first = seen[0]!;
    assert.ok(first >= 1, `counter after an increment: ${first}`);
    assert.deepEqual(seen, [0, 1, 2, 3, 4].map((d) => first + d));
    const stats = await stack.envoy.stats();
    const name = Object.keys(stats).find((k) => k === METRIC || k.endsWith(`.${METRIC}`));
    assert.ok(name, `Envoy has the filter's counter (${Object.keys(stats).filter((k) => k.includes("wasm")).join(", ")})`);
    assert.equal(stats[name], seen.at(-1), "get_metric returned Envoy's own value of the counter");
  });

  it("the gRPC stream's trailing metadata reaches on_grpc_trailing_metadata (proxy_on_grpc_receive_trailing_metadata)", async () => {
    const r = await until("the gRPC stream to close", (x) => x.status === 200 && x.headers["x-probe-grpc-close"] !== "none");
    const close = String(r.headers["x-probe-grpc-close"]);
    assert.match(close, /^\d+$/, `on_grpc_close status: ${close}`);
    assert.notEqual(close, "0", "the control plane has no such method: a non-OK status");
    // Envoy delivers the trailers before it closes the stream.
    assert.equal(r.headers["x-probe-grpc-trailers"], close, "grpc-status from the trailing metadata callback");
  });

  it("set_buffer_bytes replaces the response body (get_buffer_status gives its length)", async () => {
    const r = await get({ "x-probe-rewrite": "1" });
    assert.equal(r.status, 200);
    const match = /^rewritten (\d+) bytes: ([\s\S]*)$/.exec(r.body);
    assert.ok(match, `rewritten body: ${r.body.slice(0, 200)}`);
    const original = match[2]!;
    assert.equal(Number(match[1]), Buffer.byteLength(original), "the length get_buffer_status reported is the original body's");
    const echoed = JSON.parse(original) as Echoed;
    assert.equal(echoed.headers["x-probe-rewrite"], "1", "the original body is the upstream's echo of this request");
    assert.equal(r.headers["content-length"], undefined, "the stale content-length was removed");
    const plain = await get();
    assert.doesNotMatch(plain.body, /^rewritten/, "only requests that ask for it are rewritten");
    assert.ok(JSON.parse(plain.body) as Echoed);
  });
});
