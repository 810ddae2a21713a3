import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_MAX_MODULE_BYTES, validateModule } from "../../../controlplane/compile/validate.ts";
import { wasmModule, type FixtureImport } from "./wasm-fixture.ts";

const ABI_020 = ["proxy_abi_version_0_2_0", "malloc"];

function errorOf(bytes: Uint8Array): string {
  const result = validateModule(bytes);
  if (result.ok) assert.fail("module unexpectedly accepted");
  return result.error;
}

describe("validateModule", () => {
  test("refuses a module over the size cap before anything else, naming CP_MAX_MODULE_BYTES", () => {
    const bytes = wasmModule({ imports: [{ module: "env", name: "proxy_log" }], exports: ABI_020 });
    assert.equal(validateModule(bytes, { maxBytes: bytes.byteLength }).ok, true, "exactly at the cap is fine");
    const over = validateModule(bytes, { maxBytes: bytes.byteLength - 1 });
    assert.deepEqual(over, {
      ok: false,
      error: `module is ${bytes.byteLength} bytes (${(bytes.byteLength / 1024).toFixed(1)} KiB), over the ${bytes.byteLength - 1} bytes (${((bytes.byteLength - 1) / 1024).toFixed(1)} KiB) limit (CP_MAX_MODULE_BYTES)`,
    });
    // Checked before parsing: an oversize blob is refused for its size, not for its bytes.
    const junk = new Uint8Array(9 * 1024 * 1024);
    const r = validateModule(junk, { maxBytes: DEFAULT_MAX_MODULE_BYTES });
    assert.equal(r.ok, false);
    assert.match((r as { error: string }).error, /^module is 9437184 bytes \(9\.0 MiB\), over the 8388608 bytes \(8\.0 MiB\) limit/);
  });

  test("accepts proxy-wasm 0.2.0 with env.proxy_* and WASI imports", () => {
    const imports: FixtureImport[] = [
      { module: "env", name: "proxy_log" },
      { module: "env", name: "proxy_continue_stream" },
      { module: "wasi_unstable", name: "proc_exit" },
      { module: "wasi_snapshot_preview1", name: "fd_write" },
      { module: "wasi_snapshot_preview1", name: "random_get" },
    ];
    const result = validateModule(wasmModule({ imports, exports: ABI_020 }));
    assert.deepEqual(result, {
      ok: true,
      abiVersion: "0.2.0",
      imports: imports.map((i) => `${i.module}.${i.name}`),
    });
  });

  test("accepts 0.2.1 with proxy_on_memory_allocate and proxy_get_log_level", () => {
    const result = validateModule(wasmModule({
      imports: [{ module: "env", name: "proxy_get_log_level" }],
      exports: ["proxy_on_memory_allocate", "proxy_abi_version_0_2_1"],
    }));
    assert.ok(result.ok);
    assert.equal(result.abiVersion, "0.2.1");
  });

  test("rejects garbage bytes", () => {
    assert.match(errorOf(new TextEncoder().encode("definitely not wasm")), /^not a valid Wasm module: /);
    assert.match(errorOf(new Uint8Array(0)), /^not a valid Wasm module/);
  });

  test("rejects env.seed, naming it and the likely cause", () => {
    const error = errorOf(wasmModule({ imports: [{ module: "env", name: "seed" }], exports: ABI_020 }));
    assert.equal(error, "imports env.seed, which Envoy does not provide (Math.random?)");
  });

  test("rejects ABI-specific functions from another ABI version", () => {
    assert.match(
      errorOf(wasmModule({ imports: [{ module: "env", name: "proxy_clear_route_cache" }], exports: ABI_020 })),
      /env\.proxy_clear_route_cache, which Envoy does not provide \(only in proxy-wasm ABI 0\.1\.0, this module declares 0\.2\.0; clear_route_cache\(\)\?\)/,
    );
    assert.match(
      errorOf(wasmModule({ imports: [{ module: "env", name: "proxy_get_log_level" }], exports: ABI_020 })),
      /only in proxy-wasm ABI 0\.2\.1/,
    );
  });

  test("lists every unknown import", () => {
    const error = errorOf(wasmModule({
      imports: [
        { module: "env", name: "trace" },
        { module: "env", name: "abort" },
        { module: "wasi_snapshot_preview1", name: "thread_spawn" },
      ],
      exports: ABI_020,
    }));
    assert.match(error, /env\.trace.*; imports env\.abort.*abort_proc_exit.*; imports wasi_snapshot_preview1\.thread_spawn/);
  });

  test("rejects imported memory and globals", () => {
    assert.match(
      errorOf(wasmModule({ imports: [{ module: "env", name: "memory", kind: "memory" }], exports: ABI_020 })),
      /imports memory env\.memory, but Envoy provides only functions/,
    );
  });

  test("requires an ABI version export Envoy serves", () => {
    assert.match(errorOf(wasmModule({ exports: ["malloc"] })), /proxy_abi_version_0_2_0/);
    assert.match(errorOf(wasmModule({ exports: ["proxy_abi_version_0_1_0", "malloc"] })), /ABI 0\.1\.0/);
  });

  test("requires malloc or proxy_on_memory_allocate", () => {
    assert.match(errorOf(wasmModule({ exports: ["proxy_abi_version_0_2_0"] })), /malloc/);
  });
});
