// A Rust proxy-wasm module's imports and exports (exactly those of filters/hello-rust as cargo
// 1.95 builds it with proxy-wasm 0.2.5) go through the same classification as AssemblyScript's.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { moduleCapabilities } from "../../../controlplane/compile/capabilities.ts";
import { validateModule } from "../../../controlplane/compile/validate.ts";
import { wasmModule } from "./wasm-fixture.ts";

const ENV = [
  "get_buffer_bytes", "set_buffer_bytes", "get_property", "set_property", "add_header_map_value", "get_header_map_pairs",
  "get_header_map_value", "set_header_map_pairs", "replace_header_map_value", "remove_header_map_value", "close_stream",
  "get_status", "get_shared_data", "continue_stream", "set_shared_data", "set_tick_period_milliseconds", "grpc_cancel",
  "get_current_time_nanoseconds", "grpc_stream", "grpc_close", "grpc_call", "http_call", "send_local_response",
  "dequeue_shared_queue", "enqueue_shared_queue", "resolve_shared_queue", "call_foreign_function", "register_shared_queue",
  "set_effective_context", "grpc_send", "log", "done",
].map((n) => ({ module: "env", name: `proxy_${n}` }));
const WASI = ["environ_get", "environ_sizes_get", "fd_write", "proc_exit"].map((name) => ({ module: "wasi_snapshot_preview1", name }));
const EXPORTS = [
  "_initialize", "proxy_on_configure", "proxy_on_context_create", "proxy_on_delete", "proxy_on_done",
  "proxy_on_downstream_connection_close", "proxy_on_downstream_data", "proxy_on_foreign_function", "proxy_on_grpc_close",
  "proxy_on_grpc_receive", "proxy_on_grpc_receive_initial_metadata", "proxy_on_grpc_receive_trailing_metadata",
  "proxy_on_http_call_response", "proxy_on_log", "proxy_on_new_connection", "proxy_on_queue_ready", "proxy_on_request_body",
  "proxy_on_request_headers", "proxy_on_request_trailers", "proxy_on_response_body", "proxy_on_response_headers",
  "proxy_on_response_trailers", "proxy_on_tick", "proxy_on_upstream_connection_close", "proxy_on_upstream_data",
  "proxy_on_vm_start", "proxy_on_memory_allocate", "proxy_abi_version_0_2_1",
];
const helloRust = wasmModule({ imports: [...ENV, ...WASI], exports: EXPORTS });

describe("capabilities of a Rust proxy-wasm module", () => {
  test("it is a valid module for Envoy (ABI 0.2.1, proxy_on_memory_allocate, every import provided)", () => {
    const v = validateModule(helloRust);
    assert.ok(v.ok, v.ok ? "" : v.error);
    assert.equal(v.abiVersion, "0.2.1");
  });

  test("every import is classified: the base set, or a named group; proc_exit is base", () => {
    const caps = moduleCapabilities(helloRust, []);
    assert.ok(caps.undeclaredImports.every((u) => u.group !== undefined), JSON.stringify(caps.undeclaredImports));
    const groups = [...new Set(caps.undeclaredImports.map((u) => u.group))].sort();
    assert.deepEqual(groups, ["foreign_function", "grpc", "http_call", "properties", "shared_data", "shared_queue", "wasi_env", "wasi_fs"]);
    assert.deepEqual(caps.undeclaredImports.filter((u) => u.import.startsWith("wasi_")).map((u) => `${u.import}:${u.group}`), [
      "wasi_snapshot_preview1.environ_get:wasi_env", "wasi_snapshot_preview1.environ_sizes_get:wasi_env", "wasi_snapshot_preview1.fd_write:wasi_fs",
    ]);
    assert.ok(caps.granted.includes("proc_exit"));
  });

  test("the exported callbacks are granted (Envoy never calls one left out); declaring wasi_fs grants fd_write", () => {
    const caps = moduleCapabilities(helloRust, ["wasi_fs"]);
    for (const cb of ["proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_http_call_response", "proxy_on_vm_start"]) {
      assert.ok(caps.granted.includes(cb), cb);
    }
    assert.ok(caps.granted.includes("fd_write"));
    assert.ok(!caps.undeclaredImports.some((u) => u.import.endsWith(".fd_write")));
  });
});
