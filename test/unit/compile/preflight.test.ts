// The upload pre-flight: a module is started as Envoy would start it, in a worker with a deadline.
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { closeCompiler, compileFilter } from "../../../controlplane/compile/compiler.ts";
import { preflightModule } from "../../../controlplane/compile/preflight.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/**
 * A module exporting proxy_on_context_create (no-op) and proxy_on_vm_start / proxy_on_configure
 * with the given bodies (raw Wasm instructions, no locals, result i32).
 */
function plugin(vmStart: number[], configure: number[] = [0x41, 0x01]): Uint8Array {
  const leb = (n: number) => {
    const o: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      o.push(b);
    } while (n);
    return o;
  };
  const name = (s: string) => [...leb(s.length), ...Buffer.from(s)];
  const section = (id: number, items: number[][]) => {
    const body = [...leb(items.length), ...items.flat()];
    return [id, ...leb(body.length), ...body];
  };
  const code = (instr: number[]) => {
    const body = [0x00, ...instr, 0x0b];
    return [...leb(body.length), ...body];
  };
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [[0x60, 0x02, 0x7f, 0x7f, 0x00], [0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]]),
    ...section(3, [[0x00], [0x01], [0x01]]),
    ...section(7, [
      [...name("proxy_on_context_create"), 0x00, 0x00],
      [...name("proxy_on_vm_start"), 0x00, 0x01],
      [...name("proxy_on_configure"), 0x00, 0x02],
    ]),
    ...section(10, [code([]), code(vmStart), code(configure)]),
  ]);
}
const TRUE = [0x41, 0x01];
const FALSE = [0x41, 0x00];
const LOOP_FOREVER = [0x03, 0x40, 0x0c, 0x00, 0x0b, 0x00]; // loop br 0 end unreachable
const TRAP = [0x00];

describe("preflightModule", () => {
  let addHeader: Uint8Array;
  before(async () => {
    const built = await compileFilter(path.join(REPO, "filters/add-header/index.ts"));
    if (!built.ok) assert.fail(built.error);
    addHeader = built.wasm;
  });
  after(closeCompiler);

  test("an AssemblyScript module under the root id it registers starts", async () => {
    assert.deepEqual(await preflightModule(addHeader, { rootId: "add-header" }), { ok: true, unsupported: [] });
  });

  test("an AssemblyScript module under a root id it does not register traps in context creation", async () => {
    const r = await preflightModule(addHeader, { rootId: "wrong" });
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.error, /Missing root context factory for root id: wrong/);
  });

  test("onStart or onConfigure returning false, or trapping, is a failure with the reason", async () => {
    const start = await preflightModule(plugin(FALSE), { rootId: "x" });
    assert.match(start.ok ? "" : start.error, /onStart \(proxy_on_vm_start\) returned false/);
    const configure = await preflightModule(plugin(TRUE, FALSE), { rootId: "x", configuration: "bad" });
    assert.match(configure.ok ? "" : configure.error, /onConfigure rejected the configuration "bad"/);
    const trap = await preflightModule(plugin(TRAP), { rootId: "x" });
    assert.match(trap.ok ? "" : trap.error, /unreachable/);
    assert.equal((await preflightModule(plugin(TRUE), { rootId: "x" })).ok, true);
  });

  test("a module that loops in onStart is stopped at the deadline, and the next pre-flight runs", async () => {
    const r = await preflightModule(plugin(LOOP_FOREVER), { rootId: "x", timeoutMs: 300 });
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.error, /did not finish starting within 300 ms/);
    assert.equal((await preflightModule(plugin(TRUE), { rootId: "x" })).ok, true);
  });

  test("bytes that are not a module fail, not throw", async () => {
    const r = await preflightModule(new Uint8Array([1, 2, 3]), { rootId: "x" });
    assert.equal(r.ok, false);
  });
});
