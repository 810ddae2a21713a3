// The registry over a shared store (replicas, CP_STORE=etcd): what another replica saved arrives
// as (record, revision) and must be applied in revision order, whatever order it arrives in. The
// store here is an in-memory stand-in with etcd's revision semantics (pure logic; the real etcd
// is in test/unit/store/etcd-store.test.ts and test/e2e/replicas-etcd.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FilterRegistry, type GoodModule } from "../../../controlplane/registry/filter-registry.ts";
import type { FilterRecord, FilterRecordStore, LoadedRecords } from "../../../controlplane/store/filter-records.ts";
import { MemoryModuleStore, sha256Of } from "../../../controlplane/store/module-store.ts";

/** One store revision counter for every key, like etcd's. */
class SharedRecords implements FilterRecordStore {
  readonly shared = true;
  revision = 0;
  readonly records = new Map<string, FilterRecord>();
  async load(): Promise<LoadedRecords> {
    return { records: [...this.records.values()], problems: [], revision: this.revision };
  }
  async update(name: string, mutate: (latest: FilterRecord | undefined) => FilterRecord): Promise<{ record: FilterRecord; revision: number }> {
    const record = mutate(this.records.get(name));
    this.records.set(name, structuredClone(record));
    return { record, revision: ++this.revision };
  }
  async delete(name: string): Promise<number> {
    this.records.delete(name);
    return ++this.revision;
  }
}

const wasm = (marker: string) => new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);

function setup(): { modules: MemoryModuleStore; records: SharedRecords; a: FilterRegistry; b: FilterRegistry } {
  const modules = new MemoryModuleStore();
  const records = new SharedRecords();
  return { modules, records, a: new FilterRegistry({ modules, records }), b: new FilterRegistry({ modules, records }) };
}

async function commit(r: FilterRegistry, name: string, marker: string): Promise<string> {
  const bytes = wasm(marker);
  await r.commitModule(name, bytes, { sha256: sha256Of(bytes), rootId: name, buildMs: 1, buildKey: marker }, {});
  return sha256Of(bytes);
}

describe("FilterRegistry on a shared store", () => {
  test("a replica applies another's commits in revision order, even when they arrive out of order", async () => {
    const { records, a, b } = setup();
    const s1 = await commit(a, "f", "v1");
    const first = { record: structuredClone(records.records.get("f")!), revision: records.revision };
    const s2 = await commit(a, "f", "v2");
    const second = { record: structuredClone(records.records.get("f")!), revision: records.revision };
    await b.applyShared(second.record, second.revision);
    await b.applyShared(first.record, first.revision); // late: ignored
    assert.equal(b.get("f")?.module?.sha256, s2);
    assert.deepEqual(b.historyOf("f").map((m: GoodModule) => m.sha256), [s1, s2]);
    assert.ok(b.moduleBytes(s2), "the bytes came from the module store");
    assert.equal(b.lastBuildKey("f"), "v2");
  });

  test("commits on two replicas build one history: retention reads the stored record, not memory", async () => {
    const { records, a, b } = setup();
    const s1 = await commit(a, "f", "v1");
    // b has heard nothing yet, and commits an upload: the stored history keeps a's module.
    const s2 = await commit(b, "f", "u1");
    assert.deepEqual(records.records.get("f")!.history.map((m) => m.sha256), [s1, s2]);
  });

  test("build status is shared: another replica shows the builder's error", async () => {
    const { records, a, b } = setup();
    const s1 = await commit(a, "f", "v1");
    a.buildFailed("f", "index.ts(3,1): ERROR TS2304");
    await new Promise<void>((resolve) => setImmediate(resolve));
    await a.applyShared(records.records.get("f")!, records.revision); // wait for the serial write
    const stored = records.records.get("f")!;
    assert.equal(stored.status, "error");
    await b.applyShared(stored, records.revision);
    assert.equal(b.get("f")?.status, "error");
    assert.equal(b.get("f")?.error, "index.ts(3,1): ERROR TS2304");
    assert.equal(b.get("f")?.module?.sha256, s1, "the last good module still serves");
  });

  test("a deletion and a resync remove filters the store no longer has, unless something newer came", async () => {
    const { records, a, b } = setup();
    await commit(a, "f", "v1");
    await commit(a, "g", "v1");
    for (const r of records.records.values()) await b.applyShared(r, records.revision);
    const deletedAt = await records.delete("f");
    await b.removeShared("f", 1); // older than the revision b holds for f (2): ignored
    assert.ok(b.get("f"));
    await b.removeShared("f", deletedAt);
    assert.equal(b.get("f"), undefined);
    records.records.delete("g");
    await b.resyncShared([], ++records.revision);
    assert.deepEqual(b.list(), []);
  });
});
