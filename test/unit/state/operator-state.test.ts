import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";

let dir: string;
let seq = 0;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-state-"));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A state file path in a fresh sub-directory of its own (which the state creates on write). */
function freshFile(): { file: string; folder: string } {
  const folder = path.join(dir, `case-${++seq}`);
  return { file: path.join(folder, "state.json"), folder };
}

async function onDisk(file: string): Promise<unknown> {
  return JSON.parse(await readFile(file, "utf8"));
}

test("a missing file is an empty state", async () => {
  const { file } = freshFile();
  const state = new OperatorState(file);
  await state.load();
  assert.deepEqual(state.choice("anything"), {});
});

test("update persists, and a fresh OperatorState on the same file loads it", async () => {
  const { file } = freshFile();
  const state = new OperatorState(file);
  await state.load();
  await state.update("add-header", { enabled: false });
  await state.update("add-header", { order: 5 }); // merges with the earlier choice
  await state.update("other", { configuration: "cfg" });
  assert.deepEqual(state.choice("add-header"), { enabled: false, order: 5 });

  assert.deepEqual(await onDisk(file), {
    filters: { "add-header": { enabled: false, order: 5 }, other: { configuration: "cfg" } },
  });

  const reloaded = new OperatorState(file);
  await reloaded.load();
  assert.deepEqual(reloaded.choice("add-header"), { enabled: false, order: 5 });
  assert.deepEqual(reloaded.choice("other"), { configuration: "cfg" });
  assert.deepEqual(reloaded.choice("unknown"), {});
});

test("updates leave no temp files behind", async () => {
  const { file, folder } = freshFile();
  const state = new OperatorState(file);
  for (let i = 0; i < 5; i++) await state.update("f", { order: i });
  assert.deepEqual(await readdir(folder), ["state.json"]);
});

test("concurrent updates end with the last one on disk, and no temp files", async () => {
  const { file, folder } = freshFile();
  const state = new OperatorState(file);
  const updates: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) updates.push(state.update("f", { order: i, enabled: i % 2 === 0 }));
  await Promise.all(updates);
  assert.deepEqual(await onDisk(file), { filters: { f: { order: 49, enabled: false } } });
  assert.deepEqual(await readdir(folder), ["state.json"]);

  const reloaded = new OperatorState(file);
  await reloaded.load();
  assert.deepEqual(reloaded.choice("f"), { order: 49, enabled: false });
});

test("concurrent updates of different filters all persist", async () => {
  const { file } = freshFile();
  const state = new OperatorState(file);
  await Promise.all(["a", "b", "c", "d"].map((name, i) => state.update(name, { order: i })));
  assert.deepEqual(await onDisk(file), { filters: { a: { order: 0 }, b: { order: 1 }, c: { order: 2 }, d: { order: 3 } } });
});

test("an invalid JSON file makes load() throw an error naming the file", async () => {
  const { file, folder } = freshFile();
  await mkdir(folder, { recursive: true });
  await writeFile(file, "{ not json");
  const state = new OperatorState(file);
  await assert.rejects(state.load(), (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.ok(err.message.includes(file), `message names the file: ${err.message}`);
    return true;
  });
});

test("a JSON file of the wrong shape makes load() throw an error naming the file", async () => {
  const { file, folder } = freshFile();
  await mkdir(folder, { recursive: true });
  for (const text of ["[]", "null", "42", "", '{"filters": 3}', '{"filters": null}', '{"filters": {"f": null}}', '{"other": {}}']) {
    await writeFile(file, text);
    await assert.rejects(new OperatorState(file).load(), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(file), `${text}: message names the file: ${err.message}`);
      return true;
    });
  }
});

test("load ignores fields of the wrong type", async () => {
  const { file, folder } = freshFile();
  await mkdir(folder, { recursive: true });
  await writeFile(file, JSON.stringify({ filters: { f: { enabled: "no", order: 1.5, configuration: 3 }, g: { enabled: true, order: 7, configuration: "x" } } }));
  const state = new OperatorState(file);
  await state.load();
  assert.deepEqual(state.choice("f"), {});
  assert.deepEqual(state.choice("g"), { enabled: true, order: 7, configuration: "x" });
});

test("onChange listeners run after the write, and can unsubscribe", async () => {
  const { file } = freshFile();
  const state = new OperatorState(file);
  const seen: unknown[] = [];
  const off = state.onChange(() => {
    // The change is already on disk when listeners hear of it.
    seen.push(JSON.parse(readFileSync(file, "utf8")));
  });
  await state.update("f", { enabled: false });
  assert.deepEqual(seen, [{ filters: { f: { enabled: false } } }]);
  off();
  await state.update("f", { enabled: true });
  assert.equal(seen.length, 1);
});

test("fail policy: open, closed and reload persist; anything else is dropped on load", async () => {
  const { file, folder } = freshFile();
  const state = new OperatorState(file);
  await state.update("a", { failPolicy: "reload" });
  await state.update("b", { failPolicy: "open" });
  const fresh = new OperatorState(file);
  await fresh.load();
  assert.equal(fresh.choice("a").failPolicy, "reload");
  assert.equal(fresh.choice("b").failPolicy, "open");
  await mkdir(folder, { recursive: true });
  await writeFile(file, JSON.stringify({ filters: { c: { failPolicy: "sometimes" }, d: { failPolicy: "closed" } } }));
  const loaded = new OperatorState(file);
  await loaded.load();
  assert.deepEqual(loaded.choice("c"), {});
  assert.deepEqual(loaded.choice("d"), { failPolicy: "closed" });
});
