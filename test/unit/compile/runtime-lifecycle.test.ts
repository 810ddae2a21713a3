// The vendored runtime over many streams, in this process's V8 with a minimal proxy-wasm host
// (the few host functions add-header calls): what Envoy calls per stream, and that a stream
// leaves nothing allocated behind. Envoy itself runs these modules in test/e2e (runtime-bindings,
// sdk-readme-filter); it exposes no Wasm memory figure, hence this check here.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { closeCompiler, compileFilter } from "../../../controlplane/compile/compiler.ts";
import { repoPath } from "../../support/paths.ts";

interface Host {
  exports: Record<string, (...args: number[]) => number>;
  memory: WebAssembly.Memory;
  headersAdded: string[];
}

/** Instantiates `wasm` with the host functions add-header uses; every other import is a no-op. */
function instantiate(wasm: Uint8Array, rootId: string): Host {
  const headersAdded: string[] = [];
  let instance: WebAssembly.Instance | undefined;
  const memory = (): WebAssembly.Memory => instance!.exports.memory as WebAssembly.Memory;
  const text = (ptr: number, len: number) => new TextDecoder().decode(new Uint8Array(memory().buffer, ptr, len));
  const give = (value: string, ptrPtr: number, sizePtr: number): number => {
    const bytes = new TextEncoder().encode(value);
    const ptr = (instance!.exports.malloc as (n: number) => number)(bytes.length);
    new Uint8Array(memory().buffer, ptr, bytes.length).set(bytes);
    const view = new DataView(memory().buffer);
    view.setUint32(ptrPtr, ptr, true);
    view.setUint32(sizePtr, bytes.length, true);
    return 0;
  };
  const host: Record<string, (...args: number[]) => number> = {
    proxy_get_property: (_p, _l, ptrPtr, sizePtr) => give(rootId, ptrPtr!, sizePtr!),
    proxy_add_header_map_value: (map, kp, kl, vp, vl) => {
      headersAdded.push(`${map}:${text(kp!, kl!)}=${text(vp!, vl!)}`);
      return 0;
    },
  };
  const env = new Proxy(host, { get: (target, name: string) => target[name] ?? (() => 0) });
  const module = new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>);
  instance = new WebAssembly.Instance(module, { env, wasi_unstable: { proc_exit: (code: number) => assert.fail(`proc_exit(${code})`) } });
  return { exports: instance.exports as Host["exports"], memory: memory(), headersAdded };
}

/** One HTTP stream as Envoy drives it with `direct_response`: only the callbacks exported. */
function stream(h: Host, id: number): void {
  const e = h.exports;
  e.proxy_on_context_create!(id, 1);
  e.proxy_on_request_headers!(id, 3, 1);
  e.proxy_on_response_headers?.(id, 3, 0);
  e.proxy_on_response_body?.(id, 14, 1);
  e.proxy_on_done?.(id);
  e.proxy_on_log?.(id);
  e.proxy_on_delete!(id);
}

describe("the vendored runtime, stream after stream", () => {
  let scratch: string | undefined;
  after(async () => {
    await closeCompiler();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("add-header: Envoy is called for 4 callbacks a stream, 2 host calls, and memory stays flat", async () => {
    const out = await compileFilter(repoPath("filters", "add-header", "index.ts"), { baseDir: repoPath() });
    if (!out.ok) assert.fail(out.error);
    const h = instantiate(out.wasm, "add-header");
    const callbacks = Object.keys(h.exports).filter((n) => n.startsWith("proxy_on_")).sort();
    assert.deepEqual(callbacks, [
      "proxy_on_configure", "proxy_on_context_create", "proxy_on_delete", "proxy_on_request_headers",
      "proxy_on_response_headers", "proxy_on_vm_start",
    ]);
    h.exports.proxy_on_context_create!(1, 0);
    assert.equal(h.exports.proxy_on_configure!(1, 0), 1);
    for (let id = 2; id < 1_002; id++) stream(h, id);
    assert.deepEqual(h.headersAdded.slice(0, 2), ["0:x-wasm-processed=yes", "2:x-wasm-filter=add-header"]);
    assert.equal(h.headersAdded.length, 2_000);
    const pages = h.memory.buffer.byteLength / 65_536;
    // Before the runtime's getContext fix, every stream kept its context (~50 bytes): 30k
    // streams grew memory by ~24 pages.
    for (let id = 1_002; id < 31_002; id++) stream(h, id);
    assert.equal(h.memory.buffer.byteLength / 65_536, pages, "memory grew over 30,000 streams");
  });

  test("trimExports: false keeps every callback; a filter's own onResponseBody keeps its callback", async () => {
    scratch = await mkdtemp(path.join(tmpdir(), "wasm-xds-lifecycle-"));
    const dir = path.join(scratch, "filters", "body");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "index.ts"), `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterDataStatusValues } from "@solo-io/proxy-runtime";
class R extends RootContext { createContext(id: u32): Context { return new C(id, this); } }
class C extends Context {
  onResponseBody(n: usize, end: bool): FilterDataStatusValues { return FilterDataStatusValues.Continue; }
}
registerRootContext((id: u32): RootContext => new R(id), "body");
`);
    const entry = path.join(dir, "index.ts");
    const trimmed = await compileFilter(entry, { baseDir: scratch });
    const full = await compileFilter(entry, { baseDir: scratch, build: { trimExports: false } });
    if (!trimmed.ok || !full.ok) assert.fail("compile failed");
    const names = (w: Uint8Array) => WebAssembly.Module.exports(new WebAssembly.Module(w as Uint8Array<ArrayBuffer>)).map((e) => e.name);
    assert.ok(names(trimmed.wasm).includes("proxy_on_response_body"));
    assert.ok(!names(trimmed.wasm).includes("proxy_on_request_headers"));
    assert.ok(trimmed.trimmedExports?.includes("proxy_on_log"));
    assert.ok(names(full.wasm).includes("proxy_on_log") && names(full.wasm).includes("proxy_on_request_headers"));
    assert.deepEqual(full.trimmedExports, []);
  });
});
