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
  /** The plugin_root_id the next root context created reads. */
  rootId: string;
}

/** What the host's proc_exit throws: the runtime aborts (a trap) through it. */
class ProcExit extends Error {}

/** Instantiates `wasm` with the host functions add-header uses; every other import is a no-op. */
function instantiate(wasm: Uint8Array, rootId: string): Host {
  const headersAdded: string[] = [];
  let instance: WebAssembly.Instance | undefined;
  // eslint-disable-next-line prefer-const -- assigned once the instance exists; read by host calls
  let h: Host;
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
    proxy_get_property: (_p, _l, ptrPtr, sizePtr) => give(h.rootId, ptrPtr!, sizePtr!),
    proxy_add_header_map_value: (map, kp, kl, vp, vl) => {
      headersAdded.push(`${map}:${text(kp!, kl!)}=${text(vp!, vl!)}`);
      return 0;
    },
  };
  const env = new Proxy(host, { get: (target, name: string) => target[name] ?? (() => 0) });
  const module = new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>);
  const procExit = (code: number) => { throw new ProcExit(`proc_exit(${code})`); };
  instance = new WebAssembly.Instance(module, { env, wasi_unstable: { proc_exit: procExit } });
  h = { exports: instance.exports as Host["exports"], memory: memory(), headersAdded, rootId };
  return h;
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

  test("contexts: hundreds live under two roots, deleted out of order; each callback finds its own", async () => {
    scratch ??= await mkdtemp(path.join(tmpdir(), "wasm-xds-lifecycle-"));
    const dir = path.join(scratch, "filters", "ids");
    await mkdir(dir, { recursive: true });
    // Echoes the ids of the context a callback reached, so a lookup that finds another stream's
    // context (or the wrong root's) shows in the headers.
    await writeFile(path.join(dir, "index.ts"), `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
class R extends RootContext { createContext(id: u32): Context { return new C(id, this); } }
class C extends Context {
  onRequestHeaders(h: u32, end: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-id", this.context_id.toString());
    stream_context.headers.request.add("x-root", this.root_context.context_id.toString());
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new R(id), "a");
registerRootContext((id: u32): RootContext => new R(id), "b");
`);
    const out = await compileFilter(path.join(dir, "index.ts"), { baseDir: scratch });
    if (!out.ok) assert.fail(out.error);
    const h = instantiate(out.wasm, "a");
    const e = h.exports;
    e.proxy_on_context_create!(1, 0);
    h.rootId = "b";
    e.proxy_on_context_create!(7, 0);
    const ask = (id: number): string[] => {
      h.headersAdded.length = 0;
      e.proxy_on_request_headers!(id, 0, 1);
      return h.headersAdded.slice();
    };
    // A deterministic shuffle (so a failure repeats): xorshift.
    let seed = 0x2545f491;
    const random = (n: number) => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n; };
    const live = new Map<number, number>();
    let next = 8;
    let pages = 0;
    for (let round = 0; round < 40; round++) {
      // Up to ~600 live streams (the table grows past 64 slots), ids with gaps, two roots.
      for (let k = 0; k < 300; k++) {
        const id = next;
        next += 1 + random(3);
        const root = random(2) === 0 ? 1 : 7;
        e.proxy_on_context_create!(id, root);
        live.set(id, root);
      }
      const ids = [...live.keys()];
      for (let k = 0; k < 200; k++) {
        const id = ids[random(ids.length)]!;
        assert.deepEqual(ask(id), [`0:x-id=${id}`, `0:x-root=${live.get(id)}`], `round ${round}, stream ${id}`);
      }
      // Delete a random ~half, in random order.
      for (let k = ids.length - 1; k > 0; k--) {
        const j = random(k + 1);
        [ids[k], ids[j]] = [ids[j]!, ids[k]!];
      }
      for (const id of ids.slice(0, Math.ceil(ids.length / 2))) {
        e.proxy_on_delete!(id);
        live.delete(id);
      }
      for (const [id, root] of live) assert.deepEqual(ask(id), [`0:x-id=${id}`, `0:x-root=${root}`], `round ${round}, kept ${id}`);
      if (round === 9) pages = h.memory.buffer.byteLength / 65_536;
    }
    for (const id of [...live.keys()]) e.proxy_on_delete!(id);
    assert.equal(h.memory.buffer.byteLength / 65_536, pages, "memory grew while streams came and went");
    // A deleted stream, a root context's id and an id never seen all trap (Envoy's fail policy
    // then applies) instead of reaching some other context.
    assert.throws(() => e.proxy_on_request_headers!(8, 0, 1), ProcExit);
    assert.throws(() => e.proxy_on_request_headers!(1, 0, 1), ProcExit);
    assert.throws(() => e.proxy_on_request_headers!(next + 5, 0, 1), ProcExit);
  });

  test("trimExports: false keeps every callback; a filter's own onResponseBody keeps its callback", async () => {
    scratch ??= await mkdtemp(path.join(tmpdir(), "wasm-xds-lifecycle-"));
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
