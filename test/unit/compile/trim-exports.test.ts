// Export trimming (controlplane/compile/trim-exports.ts): which callbacks a filter's sources
// implement, and the export section rewrite, on hand-assembled modules.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fs from "node:fs";
import { removeExports, RUST_TRIMMABLE_CALLBACKS, TRIMMABLE_CALLBACKS, unusedCallbacks } from "../../../controlplane/compile/trim-exports.ts";
import { wasmModule } from "./wasm-fixture.ts";

const exportsOf = (bytes: Uint8Array): string[] =>
  WebAssembly.Module.exports(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>)).map((e) => e.name);

describe("unusedCallbacks", () => {
  test("a filter implementing only the header hooks keeps those two and nothing else trimmable", () => {
    const src = "class F extends Context { onRequestHeaders(a: u32, e: bool): X {} onResponseHeaders(a: u32, e: bool): X {} }";
    const unused = unusedCallbacks([src]);
    assert.ok(!unused.includes("proxy_on_request_headers"));
    assert.ok(!unused.includes("proxy_on_response_headers"));
    for (const name of ["proxy_on_response_body", "proxy_on_log", "proxy_on_done", "proxy_on_tick", "proxy_on_request_trailers"]) {
      assert.ok(unused.includes(name), name);
    }
    assert.equal(unused.length, Object.keys(TRIMMABLE_CALLBACKS).length - 2);
  });

  test("any file of the filter that names a method keeps its callback (a library's base class too)", () => {
    const library = "export class Base extends Context { onResponseBody(n: usize, e: bool): S {} }";
    const unused = unusedCallbacks(["class A extends Context {}", library]);
    assert.ok(!unused.includes("proxy_on_response_body"));
    assert.ok(unused.includes("proxy_on_request_body"));
  });

  test("Rust (proxy-wasm crate): hello-rust keeps its two header hooks; gRPC and HTTP calls keep theirs", () => {
    const src = fs.readFileSync(new URL("../../../filters/hello-rust/src/lib.rs", import.meta.url), "utf8");
    const unused = unusedCallbacks([src], RUST_TRIMMABLE_CALLBACKS);
    assert.deepEqual(Object.keys(RUST_TRIMMABLE_CALLBACKS).filter((c) => !unused.includes(c)),
      ["proxy_on_request_headers", "proxy_on_response_headers"]);
    const calls = unusedCallbacks(["self.dispatch_grpc_call(..); self.dispatch_http_call(..);"], RUST_TRIMMABLE_CALLBACKS);
    for (const kept of ["proxy_on_grpc_receive", "proxy_on_grpc_close", "proxy_on_http_call_response"]) {
      assert.ok(!calls.includes(kept), kept);
    }
  });

  test("httpCall keeps the call-response callback and onDone (which answers pending calls)", () => {
    const unused = unusedCallbacks(["this.root_context.httpCall(cluster, headers, body, [], 1000, this, cb);"]);
    assert.ok(!unused.includes("proxy_on_http_call_response"));
    assert.ok(!unused.includes("proxy_on_done"));
  });

  test("a filter exporting a callback itself keeps it; words only match whole", () => {
    const unused = unusedCallbacks(["export function proxy_on_log(id: u32): void {}", "let onLogger = 1; // onTicks"]);
    assert.ok(!unused.includes("proxy_on_log"));
    assert.ok(unused.includes("proxy_on_tick"));
  });
});

describe("removeExports", () => {
  const names = ["memory_like", "proxy_on_log", "proxy_on_request_headers", "proxy_on_done"];

  test("drops the named exports and keeps the rest, a valid module", () => {
    const out = removeExports(wasmModule({ exports: names }), ["proxy_on_log", "proxy_on_done", "not_exported"]);
    assert.deepEqual(exportsOf(out), ["memory_like", "proxy_on_request_headers"]);
  });

  test("nothing to drop returns the same bytes", () => {
    const bytes = wasmModule({ exports: names });
    assert.equal(removeExports(bytes, []), bytes);
    assert.deepEqual([...removeExports(bytes, ["absent"])], [...bytes]);
  });

  test("an export section over 127 entries (multi-byte counts and sizes) survives", () => {
    const many = Array.from({ length: 200 }, (_, i) => `f${i}`);
    const out = removeExports(wasmModule({ exports: many }), ["f0", "f199"]);
    assert.deepEqual(exportsOf(out), many.slice(1, 199));
  });

  test("not a Wasm binary, or a truncated one, is an error", () => {
    assert.throws(() => removeExports(new TextEncoder().encode("hello world"), ["x"]), /not a Wasm binary/);
    const bytes = wasmModule({ exports: names });
    assert.throws(() => removeExports(bytes.subarray(0, bytes.length - 3), ["x"]), /runs past the end/);
  });
});
