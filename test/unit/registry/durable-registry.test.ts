import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { FilterRegistry, RETAINED_BUILDS_PER_FILTER, type RegistryPersistence } from "../../../controlplane/registry/filter-registry.ts";
import { StoreWriteError } from "../../../controlplane/store/durable-file.ts";
import { DirFilterRecordStore, type FilterRecord } from "../../../controlplane/store/filter-records.ts";
import { DirModuleStore, sha256Of } from "../../../controlplane/store/module-store.ts";

const wasm = (marker: string) => new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);

let root: string;
let seq = 0;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), "wasm-xds-durable-registry-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function persistence(dir = path.join(root, `s${++seq}`)): RegistryPersistence & { dir: string; modules: DirModuleStore } {
  return { dir, modules: new DirModuleStore(path.join(dir, "modules")), records: new DirFilterRecordStore(path.join(dir, "records")) };
}

async function commit(registry: FilterRegistry, name: string, marker: string, extra: { buildKey?: string; source?: "build" | "upload" } = {}) {
  const bytes = wasm(marker);
  await registry.commitModule(name, bytes, { sha256: sha256Of(bytes), rootId: name, buildMs: 1, ...extra }, { order: 7 });
  return sha256Of(bytes);
}

describe("FilterRegistry with a store", () => {
  test("a restart restores uploads, history, defaults and the last build key; modules serve from the store", async () => {
    const p = persistence();
    const before = new FilterRegistry(p);
    const b1 = await commit(before, "built", "b1", { buildKey: "k1" });
    const b2 = await commit(before, "built", "b2", { buildKey: "k2" });
    const up = await commit(before, "uploaded", "u1", { source: "upload" });
    const after = new FilterRegistry(persistence(p.dir));
    assert.deepEqual(await after.restore(), []);
    assert.deepEqual(after.list().map((f) => [f.name, f.status, f.module?.sha256, f.module?.source]), [["built", "ok", b2, "build"], ["uploaded", "ok", up, "upload"]]);
    assert.deepEqual(after.historyOf("built"), before.historyOf("built"), "same history, same builtAt");
    assert.deepEqual(after.get("built")?.defaults, { order: 7 });
    assert.equal(after.lastBuildKey("built"), "k2");
    assert.equal(after.lastBuildKey("uploaded"), undefined);
    assert.equal(after.cachedBuild("built", "k1")?.module.sha256, b1, "an older retained build is a cache hit");
    assert.equal(after.cachedBuild("built", "k3"), undefined);
    assert.deepEqual(await after.readModule(b1), wasm("b1"));
  });

  test("an upload over a build keeps the build key: the same inputs later change nothing", async () => {
    const registry = new FilterRegistry(persistence());
    await commit(registry, "f", "b1", { buildKey: "k1" });
    await commit(registry, "f", "u1", { source: "upload" });
    assert.equal(registry.lastBuildKey("f"), "k1");
    assert.equal(registry.get("f")?.module?.source, "upload");
  });

  test("a failed store write changes nothing in memory or in the records", async () => {
    const p = persistence();
    const registry = new FilterRegistry(p);
    const first = await commit(registry, "f", "v1", { buildKey: "k1" });
    let changes = 0;
    registry.onChange(() => changes++);
    const failing = { ...p, records: { shared: false, load: () => p.records.load(), delete: (n: string) => p.records.delete(n),
      update: async (_n: string, _m: (r: FilterRecord | undefined) => FilterRecord): Promise<never> => {
        throw new StoreWriteError("cannot write records/f.json: ENOSPC: no space left on device", "ENOSPC");
      } } };
    const broken = new FilterRegistry(failing);
    await broken.restore();
    await assert.rejects(commit(broken, "f", "v2", { buildKey: "k2" }), /ENOSPC/);
    assert.equal(broken.get("f")?.module?.sha256, first, "still the first module");
    assert.equal(broken.historyOf("f").length, 1);
    assert.equal(broken.lastBuildKey("f"), "k1");
    const fresh = new FilterRegistry(persistence(p.dir));
    await fresh.restore();
    assert.equal(fresh.get("f")?.module?.sha256, first, "the record on disk is the old one");
    assert.equal(changes, 0);
    // The unreferenced module the failed commit had written is collected by the next restore.
    assert.deepEqual((await p.modules.list()).map((m) => m.sha256), [first]);
  });

  test("evicted modules are deleted from the store; a pinned one is kept beyond the last N", async () => {
    const p = persistence();
    const registry = new FilterRegistry(p);
    let pinned: string | undefined;
    registry.setPinned(() => pinned);
    const shas: string[] = [];
    shas.push(await commit(registry, "f", "m0"));
    pinned = shas[0];
    for (let i = 1; i <= RETAINED_BUILDS_PER_FILTER + 1; i++) shas.push(await commit(registry, "f", `m${i}`));
    const retained = registry.historyOf("f").map((m) => m.sha256);
    assert.deepEqual(retained, [shas[0], ...shas.slice(-RETAINED_BUILDS_PER_FILTER)], "last N plus the pinned one");
    assert.deepEqual((await p.modules.list()).map((m) => m.sha256).sort(), [...retained].sort(), "the store holds exactly those");
    assert.equal(fs.existsSync(path.join(p.dir, "modules", `${shas[1]}.wasm`)), false);
    await registry.removeFilter("f");
    assert.deepEqual(await p.modules.list(), [], "a removed filter's modules are collected");
    assert.deepEqual((await p.records.load()).records, []);
  });

  test("a module damaged on disk is dropped from the history at restore, with a reason", async () => {
    const p = persistence();
    const registry = new FilterRegistry(p);
    const v1 = await commit(registry, "f", "v1");
    const v2 = await commit(registry, "f", "v2");
    fs.writeFileSync(path.join(p.dir, "modules", `${v2}.wasm`), "garbage");
    const restored = new FilterRegistry(persistence(p.dir));
    const problems = await restored.restore();
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, new RegExp(`f: module ${v2} is missing or damaged`));
    assert.equal(restored.get("f")?.module?.sha256, v1, "the previous good module runs");
  });
});
