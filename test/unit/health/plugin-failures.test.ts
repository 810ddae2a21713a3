import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { failurePlugin, CounterDeltas } from "../../../controlplane/health/plugin-failures.ts";

describe("failurePlugin", () => {
  test("names the plugin of its reload counters only", () => {
    assert.equal(failurePlugin("wasm.abort-request.vm_reload_backoff"), undefined, "requests refused after a crash are not more crashes");
    assert.equal(failurePlugin("wasm.abort-request.vm_reload_success"), "abort-request");
    assert.equal(failurePlugin("wasm.my.dotted.vm_reload_failure"), "my.dotted");
    assert.equal(failurePlugin("wasm.abort-request.vm_reload"), undefined, "attempts are not failures by themselves");
    assert.equal(failurePlugin("wasm.envoy.wasm.runtime.v8.created"), undefined);
    assert.equal(failurePlugin("http.ingress_http.downstream_rq_5xx"), undefined);
  });
});

describe("CounterDeltas", () => {
  test("the first message is a baseline; later rises are summed per plugin", () => {
    const d = new CounterDeltas();
    assert.deepEqual(d.next([{ name: "wasm.f.vm_reload_failure", value: 7 }]), new Map(), "counted before we listened");
    assert.deepEqual(d.next([{ name: "wasm.f.vm_reload_failure", value: 9 }, { name: "wasm.f.vm_reload_success", value: 0 }]), new Map([["f", 2]]));
    assert.deepEqual(d.next([{ name: "wasm.f.vm_reload_failure", value: 9 }]), new Map(), "no rise, no entry");
  });

  test("a counter first seen after the first message rose from 0 (Envoy sends used counters only)", () => {
    const d = new CounterDeltas();
    d.next([{ name: "cluster.x.upstream_rq_total", value: 1 }]);
    assert.deepEqual(d.next([{ name: "wasm.g.vm_reload_failure", value: 3 }, { name: "wasm.g.vm_reload_success", value: 1 }]), new Map([["g", 4]]));
  });

  test("a counter that went down counts its new value (delta reporting)", () => {
    const d = new CounterDeltas();
    d.next([{ name: "wasm.f.vm_reload_failure", value: 5 }]);
    assert.deepEqual(d.next([{ name: "wasm.f.vm_reload_failure", value: 2 }]), new Map([["f", 2]]));
  });
});
