// The pre-flight: a module is started as Envoy would start it (and its filter.test.json cases run),
// in a long-lived worker with a deadline per job.
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { closeCompiler, compileFilter } from "../../../controlplane/compile/compiler.ts";
import { closePreflight, preflightModule, warmPreflight } from "../../../controlplane/compile/preflight.ts";
import type { TestCase } from "../../../controlplane/compile/preflight-cases.ts";

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
  after(async () => {
    await closeCompiler();
    await closePreflight();
  });

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
    assert.match(configure.ok ? "" : configure.error,
      /onConfigure \(proxy_on_configure\) returned false: it rejected the configuration "bad"/);
    const trap = await preflightModule(plugin(TRAP), { rootId: "x" });
    assert.match(trap.ok ? "" : trap.error, /^proxy_on_vm_start trapped: unreachable/, "names the callback that trapped");
    const trapInConfigure = await preflightModule(plugin(TRUE, TRAP), { rootId: "x" });
    assert.match(trapInConfigure.ok ? "" : trapInConfigure.error, /^proxy_on_configure trapped: unreachable/);
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

  test("filter.test.json cases run after the start: a failing case fails with its name and the difference", async () => {
    const list: TestCase[] = [
      { name: "marks the response", expect: { response: { "x-wasm-filter": "add-header" } } },
      { name: "echoes its configuration", configuration: "hi", expect: { response: { "x-wasm-config": "hi" } } },
    ];
    const pass = await preflightModule(addHeader, { rootId: "add-header", cases: { defaultConfiguration: "", list } });
    assert.equal(pass.ok, true, JSON.stringify(pass));
    const wrong: TestCase[] = [...list, { name: "expects what it does not do", expect: { request: { "x-wasm-processed": "no" } } }];
    const fail = await preflightModule(addHeader, { rootId: "add-header", cases: { defaultConfiguration: "", list: wrong } });
    assert.equal(fail.ok, false);
    assert.match(fail.ok ? "" : fail.error,
      /^filter\.test\.json case "expects what it does not do" failed: request header x-wasm-processed: expected "no", got "yes"$/);
  });

  test("a case the module cannot run fails with the case's name and the reason; the start alone passes", async () => {
    // This module starts, but has no HTTP callbacks: a request through it is what the case finds out.
    const list = [{ name: "one request" }];
    assert.equal((await preflightModule(plugin(TRUE), { rootId: "x" })).ok, true);
    const r = await preflightModule(plugin(TRUE), { rootId: "x", cases: { defaultConfiguration: "", list } });
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.error, /^filter\.test\.json case "one request" failed: the module does not export proxy_on_request_headers/);
  });

  test("jobs queued at once all get their own answer, in order, from one worker", async () => {
    const results = await Promise.all([
      preflightModule(plugin(TRUE), { rootId: "x" }),
      preflightModule(plugin(FALSE), { rootId: "x" }),
      preflightModule(plugin(LOOP_FOREVER), { rootId: "x", timeoutMs: 300 }),
      preflightModule(addHeader, { rootId: "add-header" }),
    ]);
    assert.deepEqual(results.map((r) => r.ok), [true, false, false, true]);
    assert.match(results[2]!.ok ? "" : results[2]!.error, /within 300 ms/);
  });

  test("a warmed worker (warmed twice: the second does nothing) takes the next job", async () => {
    await closePreflight();
    warmPreflight();
    warmPreflight();
    assert.equal((await preflightModule(plugin(TRUE), { rootId: "x" })).ok, true);
  });
});
