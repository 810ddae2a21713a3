import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { probeWritable, StoreWriteError, writeFileDurably } from "../../../controlplane/store/durable-file.ts";
import { DirFilterRecordStore } from "../../../controlplane/store/filter-records.ts";
import { DirModuleStore, sha256Of, type ModuleMeta } from "../../../controlplane/store/module-store.ts";

const wasm = (marker: string) => new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);
const meta = (bytes: Uint8Array, filter = "f"): ModuleMeta =>
  ({ sha256: sha256Of(bytes), size: bytes.byteLength, filter, source: "build", rootId: filter, buildKey: "k", createdAt: new Date().toISOString() });

/** A 64 KiB tmpfs (tests run as root here); undefined where mounting is not allowed. */
function mountTmpfs(dir: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-store-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("writeFileDurably", () => {
  test("replaces the file and leaves no temp file", async () => {
    const file = path.join(dir, "a", "x.json");
    await writeFileDurably(file, "one");
    await writeFileDurably(file, "two");
    assert.equal(fs.readFileSync(file, "utf8"), "two");
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["x.json"]);
  });

  test("a read-only or full file system: StoreWriteError with the cause, the old file intact, no temp file", async (t) => {
    const mnt = path.join(dir, "tmpfs");
    if (!mountTmpfs(mnt)) return t.skip("cannot mount a tmpfs here (not root?)");
    try {
      const file = path.join(mnt, "state.json");
      await writeFileDurably(file, "old");
      // Full: a write larger than what is left.
      await assert.rejects(writeFileDurably(file, Buffer.alloc(128 * 1024, 1)), (err: unknown) =>
        err instanceof StoreWriteError && err.code === "ENOSPC" && err.statusCode === 503 && err.message.includes(file));
      assert.equal(fs.readFileSync(file, "utf8"), "old");
      assert.deepEqual(fs.readdirSync(mnt), ["state.json"], "the temp file is removed");
      execFileSync("mount", ["-o", "remount,ro", mnt]);
      await assert.rejects(writeFileDurably(file, "new"), (err: unknown) => err instanceof StoreWriteError && err.code === "EROFS");
      assert.equal(fs.readFileSync(file, "utf8"), "old");
      const probe = await probeWritable(mnt);
      assert.equal(probe?.code, "EROFS");
      assert.equal(await probeWritable(dir), undefined, "a writable folder probes fine");
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});

describe("DirModuleStore", () => {
  test("put, get, list, delete by sha256; damaged bytes are never returned", async () => {
    const store = new DirModuleStore(path.join(dir, "modules"));
    await store.open();
    const a = wasm("a");
    const b = wasm("b");
    await store.put(a, meta(a));
    await store.put(a, meta(a, "other")); // already there: kept as first stored
    await store.put(b, meta(b));
    assert.deepEqual(await store.get(sha256Of(a)), a);
    assert.equal(await store.get("0".repeat(64)), undefined);
    assert.equal(await store.get("../../etc/passwd"), undefined);
    const listed = await store.list();
    assert.deepEqual(listed.map((m) => m.sha256).sort(), [sha256Of(a), sha256Of(b)].sort());
    assert.equal(listed.find((m) => m.sha256 === sha256Of(a))?.filter, "f");
    await store.delete(sha256Of(b));
    assert.equal(await store.get(sha256Of(b)), undefined);
    fs.writeFileSync(path.join(store.dir, `${sha256Of(a)}.wasm`), wasm("tampered"));
    assert.equal(await store.get(sha256Of(a)), undefined, "bytes that do not hash to their name");
    await assert.rejects(store.put(a, { ...meta(a), sha256: sha256Of(b) }), /do not hash/);
  });
});

describe("DirFilterRecordStore", () => {
  test("records round-trip; a damaged one is reported, the others load", async () => {
    const records = new DirFilterRecordStore(path.join(dir, "records"));
    const m = wasm("r");
    const good = { sha256: sha256Of(m), rootId: "f", size: m.byteLength, builtAt: new Date().toISOString(), buildMs: 3, source: "upload" as const };
    await records.update("f", () => ({ name: "f", history: [good], defaults: { order: 2 }, lastBuildKey: "key" }));
    await records.update("g", () => ({ name: "g", history: [good], defaults: {} }));
    fs.writeFileSync(path.join(records.dir, "g.json"), "{ torn");
    const { records: loaded, problems } = await records.load();
    assert.deepEqual(loaded, [{ name: "f", history: [good], defaults: { order: 2 }, lastBuildKey: "key" }]);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /g\.json/);
    await records.delete("f");
    assert.deepEqual((await records.load()).records, []);
  });
});
