// The etcd stores against a real etcd (one member, started here): compare-and-swap keeps every
// concurrent write, modules over etcd's request limit round-trip in chunks, and a damaged or
// half-written module is never returned.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { EtcdConnection } from "../../../controlplane/store/etcd-connection.ts";
import { CHUNK_BYTES, EtcdModuleStore } from "../../../controlplane/store/etcd-modules.ts";
import { EtcdFilterRecordStore } from "../../../controlplane/store/etcd-records.ts";
import { EtcdStateBackend } from "../../../controlplane/store/etcd-state.ts";
import { parseEtcdUrl } from "../../../controlplane/store/etcd-url.ts";
import { sha256Of, type ModuleMeta } from "../../../controlplane/store/module-store.ts";
import { startEtcd, type EtcdCluster } from "../../support/etcd.ts";
import { makeWorkDir } from "../../support/paths.ts";

describe("CP_STORE URLs", () => {
  test("members and an optional prefix", () => {
    assert.deepEqual(parseEtcdUrl("etcd://127.0.0.1:2379"), { hosts: ["http://127.0.0.1:2379"], prefix: "wasm-xds/" });
    assert.deepEqual(parseEtcdUrl("etcd://a:1,b:2,[::1]:3/team/prod"), { hosts: ["http://a:1", "http://b:2", "http://[::1]:3"], prefix: "team/prod/" });
    for (const bad of ["etcd://", "http://a:1", "etcd://a", "etcd://a:1,,b:2", "etcd://a:1/../x", "etcd://a:1/x y"]) {
      assert.throws(() => parseEtcdUrl(bad), /expected etcd:\/\//, bad);
    }
  });
});

describe("etcd stores (real etcd)", { timeout: 60_000 }, () => {
  let etcd: EtcdCluster;
  const connections: EtcdConnection[] = [];
  let prefixN = 0;
  /** Two replicas' connections to a fresh prefix. */
  const pair = (): [EtcdConnection, EtcdConnection] => {
    const target = { ...parseEtcdUrl(etcd.storeUrl), prefix: `t${++prefixN}/` };
    const both: [EtcdConnection, EtcdConnection] = [new EtcdConnection(target), new EtcdConnection(target)];
    connections.push(...both);
    return both;
  };

  before(async () => {
    etcd = await startEtcd(makeWorkDir("etcd-store"), 1);
  });
  after(async () => {
    for (const c of connections) c.close();
    await etcd?.stop();
  });

  test("operator state: 2 x 15 concurrent updates from two replicas, none lost", async () => {
    const [x, y] = pair();
    const [sx, sy] = [new EtcdStateBackend(x), new EtcdStateBackend(y)];
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 15; i++) {
      writes.push(sx.update((d) => ({ filters: { ...d.filters, [`x${i}`]: { order: i } } })));
      writes.push(sy.update((d) => ({ filters: { ...d.filters, [`y${i}`]: { enabled: i % 2 === 0 } } })));
    }
    await Promise.all(writes);
    const loaded = await sx.load();
    assert.equal(Object.keys(loaded!.data.filters).length, 30);
    assert.equal(loaded!.data.filters.x7?.order, 7);
    assert.equal(loaded!.data.filters.y4?.enabled, true);
  });

  test("filter records: concurrent history appends on two replicas all land", async () => {
    const [x, y] = pair();
    const [rx, ry] = [new EtcdFilterRecordStore(x), new EtcdFilterRecordStore(y)];
    const entry = (i: number) => ({ sha256: i.toString(16).padStart(64, "0"), rootId: "f", size: 1, builtAt: new Date(0).toISOString(), buildMs: 0, source: "upload" as const });
    await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? rx : ry).update("f", (latest) => ({
      name: "f", defaults: {}, history: [...(latest?.history ?? []), entry(i)],
    }))));
    const { records, revision } = await rx.load();
    assert.equal(records.length, 1);
    assert.equal(records[0]!.history.length, 12);
    assert.ok(revision > 0);
    const deletedAt = await ry.delete("f");
    assert.ok(deletedAt > revision);
    assert.deepEqual((await rx.load()).records, []);
  });

  test(`a module of 2.5 MiB (over etcd's 1.5 MiB request limit) round-trips in ${CHUNK_BYTES / 1024} KiB chunks`, async () => {
    const [x, y] = pair();
    const [mx, my] = [new EtcdModuleStore(x), new EtcdModuleStore(y)];
    const bytes = new Uint8Array(randomBytes(2.5 * 1024 * 1024));
    const meta: ModuleMeta = { sha256: sha256Of(bytes), size: bytes.byteLength, filter: "big", source: "upload", rootId: "big", createdAt: new Date().toISOString() };
    await mx.put(bytes, meta);
    const back = await my.get(meta.sha256);
    assert.ok(back && Buffer.from(back).equals(Buffer.from(bytes)), "the other replica reads the same bytes");
    const listed = await my.list();
    assert.deepEqual(listed.map((m) => [m.sha256, m.size]), [[meta.sha256, bytes.byteLength]]);
    // A damaged chunk: the module reads as absent, never as other bytes under its name.
    await x.ns.put(`modules/${meta.sha256}/c/0001`).value(Buffer.from("garbage")).exec();
    assert.equal(await my.get(meta.sha256), undefined);
    await my.delete(meta.sha256);
    assert.deepEqual(await x.ns.getAll().prefix(`modules/${meta.sha256}/`).keys(), [], "metadata and every chunk gone");
    await assert.rejects(mx.put(bytes, { ...meta, sha256: "0".repeat(64) }), /do not hash/);
  });
});
