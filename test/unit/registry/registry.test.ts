import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { DEFAULT_ORDER, effectiveFilters } from "../../../controlplane/registry/effective.ts";
import { FilterRegistry, type FilterDefaults } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";

function module(marker: string): { bytes: Uint8Array; sha256: string } {
  const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);
  return { bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}

function succeed(registry: FilterRegistry, name: string, marker: string, defaults: FilterDefaults = {}, buildMs = 12) {
  const m = module(marker);
  registry.buildSucceeded(name, m.bytes, { sha256: m.sha256, rootId: `${name}_root`, buildMs }, defaults);
  return m;
}

let dir: string;
let seq = 0;
let registry: FilterRegistry;
let state: OperatorState;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-registry-"));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  registry = new FilterRegistry();
  state = new OperatorState(path.join(dir, `state-${++seq}.json`));
  await state.load();
});

const effective = () => effectiveFilters(registry, state);
const byName = (name: string) => effective().find((f) => f.name === name);

describe("FilterRegistry", () => {
  test("a successful build stores the module and an ok entry", () => {
    const m = succeed(registry, "f", "v1", { order: 3 }, 42);
    const entry = registry.get("f");
    assert.ok(entry);
    assert.equal(entry.status, "ok");
    assert.equal(entry.error, undefined);
    assert.deepEqual(entry.defaults, { order: 3 });
    assert.equal(entry.module?.sha256, m.sha256);
    assert.equal(entry.module?.rootId, "f_root");
    assert.equal(entry.module?.size, m.bytes.byteLength);
    assert.equal(entry.module?.buildMs, 42);
    assert.ok(!Number.isNaN(Date.parse(entry.module?.builtAt ?? "")), "builtAt is a timestamp");
    assert.deepEqual(registry.moduleBytes(m.sha256), m.bytes);
  });

  test("a failed build keeps the last good module and sha256, with status error and the message", () => {
    const good = succeed(registry, "f", "good", { order: 7, configuration: "cfg" });
    const prior = registry.get("f")?.module;
    registry.buildStarted("f");
    assert.equal(registry.get("f")?.status, "building");
    assert.deepEqual(registry.get("f")?.module, prior, "a build in progress keeps the module");
    registry.buildFailed("f", "ERROR TS2304: Cannot find name 'x'");

    const entry = registry.get("f");
    assert.equal(entry?.status, "error");
    assert.equal(entry?.error, "ERROR TS2304: Cannot find name 'x'");
    assert.deepEqual(entry?.module, prior);
    assert.deepEqual(entry?.defaults, { order: 7, configuration: "cfg" }, "the manifest defaults stay too");
    assert.deepEqual(registry.moduleBytes(good.sha256), good.bytes, "the module is still served");

    const f = byName("f");
    assert.equal(f?.status, "error");
    assert.equal(f?.error, "ERROR TS2304: Cannot find name 'x'");
    assert.equal(f?.sha256, good.sha256);
    assert.equal(f?.rootId, "f_root");
    assert.equal(f?.order, 7);
    assert.equal(f?.configuration, "cfg");

    // The next good build clears the error.
    const fixed = succeed(registry, "f", "fixed");
    assert.equal(registry.get("f")?.status, "ok");
    assert.equal(registry.get("f")?.error, undefined);
    assert.equal(byName("f")?.sha256, fixed.sha256);
    assert.equal(byName("f")?.error, undefined);
  });

  test("a filter whose first build fails is listed with status error and no module", () => {
    registry.buildStarted("broken");
    registry.buildFailed("broken", "syntax error");
    const f = byName("broken");
    assert.deepEqual(f, { name: "broken", enabled: true, order: DEFAULT_ORDER, status: "error", error: "syntax error", failPolicy: "reload" });
  });

  test("four builds per filter stay servable; the oldest of five is dropped", () => {
    const builds = ["1", "2", "3", "4", "5"].map((v) => succeed(registry, "f", v));
    assert.equal(registry.moduleBytes(builds[0]!.sha256), undefined);
    for (const b of builds.slice(1)) assert.deepEqual(registry.moduleBytes(b.sha256), b.bytes);
  });

  test("rebuilding to an already retained sha256 makes it the newest again", () => {
    const [b1, b2, b3, b4] = ["1", "2", "3", "4"].map((v) => succeed(registry, "f", v));
    succeed(registry, "f", "1"); // same bytes as b1: moves to the end instead of being evicted
    const b5 = succeed(registry, "f", "5"); // evicts b2, the oldest now
    assert.deepEqual(registry.moduleBytes(b1!.sha256), b1!.bytes);
    assert.equal(registry.moduleBytes(b2!.sha256), undefined);
    assert.ok(registry.moduleBytes(b3!.sha256));
    assert.ok(registry.moduleBytes(b4!.sha256));
    assert.ok(registry.moduleBytes(b5.sha256));
  });

  test("removed() drops the entry and its modules", () => {
    const a1 = succeed(registry, "a", "a1");
    const a2 = succeed(registry, "a", "a2");
    const b = succeed(registry, "b", "b");
    registry.removed("a");
    assert.equal(registry.get("a"), undefined);
    assert.deepEqual(effective().map((f) => f.name), ["b"]);
    assert.equal(registry.moduleBytes(a1.sha256), undefined);
    assert.equal(registry.moduleBytes(a2.sha256), undefined);
    assert.deepEqual(registry.moduleBytes(b.sha256), b.bytes);
  });

  test("a module two filters share survives the removal or eviction of one", () => {
    const shared = succeed(registry, "a", "same");
    succeed(registry, "b", "same");
    registry.removed("a");
    assert.deepEqual(registry.moduleBytes(shared.sha256), shared.bytes, "b still holds it");
    for (const v of ["1", "2", "3", "4"]) succeed(registry, "c", v);
    succeed(registry, "c", "same");
    for (const v of ["5", "6", "7", "8"]) succeed(registry, "c", v); // c evicts "same"
    assert.deepEqual(registry.moduleBytes(shared.sha256), shared.bytes, "b still holds it");
    registry.removed("b");
    assert.equal(registry.moduleBytes(shared.sha256), undefined);
  });

  test("removing an unknown filter is a no-op and does not notify", () => {
    let changes = 0;
    registry.onChange(() => changes++);
    registry.removed("never-existed");
    assert.equal(changes, 0);
  });

  test("listeners hear every change until they unsubscribe", () => {
    let changes = 0;
    const off = registry.onChange(() => changes++);
    registry.buildStarted("f");
    succeed(registry, "f", "1");
    registry.buildFailed("f", "x");
    registry.removed("f");
    assert.equal(changes, 4);
    off();
    registry.buildStarted("g");
    assert.equal(changes, 4);
  });
});

describe("effectiveFilters", () => {
  test("defaults: enabled, order 100, no configuration", () => {
    const m = succeed(registry, "f", "1", {}, 9);
    const [f, ...rest] = effective();
    assert.equal(rest.length, 0);
    assert.deepEqual(f, {
      name: "f",
      enabled: true,
      order: DEFAULT_ORDER,
      status: "ok",
      sha256: m.sha256,
      rootId: "f_root",
      builtAt: registry.get("f")?.module?.builtAt,
      buildMs: 9,
      size: registry.get("f")?.module?.size,
      failPolicy: "reload",
    });
    assert.equal(DEFAULT_ORDER, 100);
  });

  test("manifest defaults win over the defaults", () => {
    succeed(registry, "f", "1", { enabled: false, order: 5, configuration: "from manifest" });
    const f = byName("f");
    assert.equal(f?.enabled, false);
    assert.equal(f?.order, 5);
    assert.equal(f?.configuration, "from manifest");
  });

  test("fail policy: operator choice > manifest > reload", async () => {
    succeed(registry, "f", "1");
    assert.equal(byName("f")?.failPolicy, "reload");
    succeed(registry, "f", "2", { failPolicy: "open" });
    assert.equal(byName("f")?.failPolicy, "open");
    await state.update("f", { failPolicy: "reload" });
    assert.equal(byName("f")?.failPolicy, "reload");
  });

  test("operator choices win over manifest defaults, field by field", async () => {
    succeed(registry, "f", "1", { enabled: false, order: 5, configuration: "from manifest" });
    await state.update("f", { enabled: true });
    assert.deepEqual([byName("f")?.enabled, byName("f")?.order, byName("f")?.configuration], [true, 5, "from manifest"]);
    await state.update("f", { order: 1 });
    assert.deepEqual([byName("f")?.enabled, byName("f")?.order, byName("f")?.configuration], [true, 1, "from manifest"]);
    await state.update("f", { configuration: "from operator" });
    assert.deepEqual([byName("f")?.enabled, byName("f")?.order, byName("f")?.configuration], [true, 1, "from operator"]);
    await state.update("f", { enabled: false });
    assert.equal(byName("f")?.enabled, false);
  });

  test("an operator's disable wins over a manifest's enabled: true, and an order of 0 is kept", async () => {
    succeed(registry, "f", "1", { enabled: true, order: 50 });
    await state.update("f", { enabled: false, order: 0 });
    assert.equal(byName("f")?.enabled, false);
    assert.equal(byName("f")?.order, 0);
  });

  test("choices survive a rebuild and a failed build", async () => {
    succeed(registry, "f", "1", { order: 5 });
    await state.update("f", { enabled: false, order: 2 });
    succeed(registry, "f", "2", { order: 6 });
    registry.buildFailed("f", "boom");
    const f = byName("f");
    assert.equal(f?.enabled, false);
    assert.equal(f?.order, 2);
    assert.equal(f?.status, "error");
  });

  test("a choice for a filter that does not exist adds nothing", async () => {
    await state.update("ghost", { enabled: true });
    succeed(registry, "real", "1");
    assert.deepEqual(effective().map((f) => f.name), ["real"]);
  });

  test("sorted by (order, name)", async () => {
    succeed(registry, "zeta", "z", { order: 10 });
    succeed(registry, "alpha", "a"); // default order 100
    succeed(registry, "beta", "b", { order: 10 });
    succeed(registry, "gamma", "g", { order: 200 });
    succeed(registry, "delta", "d"); // default order 100
    assert.deepEqual(effective().map((f) => [f.order, f.name]), [
      [10, "beta"],
      [10, "zeta"],
      [100, "alpha"],
      [100, "delta"],
      [200, "gamma"],
    ]);
    await state.update("gamma", { order: -1 });
    await state.update("beta", { order: 100 });
    assert.deepEqual(effective().map((f) => f.name), ["gamma", "zeta", "alpha", "beta", "delta"]);
  });
});
