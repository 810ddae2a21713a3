import assert from "node:assert/strict";
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, beforeEach, describe, test } from "node:test";
import { buildKey, toolchainVersions } from "../../../controlplane/compile/build-key.ts";

let root: string;
let filters: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "wasm-xds-build-key-"));
  filters = path.join(root, "filters");
  for (const [file, text] of Object.entries({
    "a/index.ts": "export const a = 1;", "a/filter.json": "{}", "a/notes.md": "x",
    "b/index.ts": "export const b = 1;", "_lib/config.ts": "export const c = 1;",
  })) {
    fs.mkdirSync(path.dirname(path.join(filters, file)), { recursive: true });
    fs.writeFileSync(path.join(filters, file), text);
  }
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("buildKey", () => {
  test("same inputs, same key: a touch or a rewrite of identical bytes changes nothing", async () => {
    const k = await buildKey(filters, "a");
    const file = path.join(filters, "a", "index.ts");
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
    fs.writeFileSync(`${file}.tmp`, fs.readFileSync(file));
    fs.renameSync(`${file}.tmp`, file); // an editor's atomic save
    assert.equal(await buildKey(filters, "a"), k);
  });

  test("what the build reads changes the key; what it does not read does not", async () => {
    const k = await buildKey(filters, "a");
    const changed = async (edit: () => void) => {
      edit();
      const next = await buildKey(filters, "a");
      return next;
    };
    assert.equal(await changed(() => fs.writeFileSync(path.join(filters, "a", "notes.md"), "y")), k, "a non-source file");
    assert.equal(await changed(() => fs.writeFileSync(path.join(filters, "b", "index.ts"), "export const b = 2;")), k, "another filter");
    assert.equal(await changed(() => fs.writeFileSync(path.join(filters, "a", "index.ts.swp"), "junk")), k, "editor droppings");
    const k2 = await changed(() => fs.writeFileSync(path.join(filters, "a", "index.ts"), "export const a = 2;"));
    assert.notEqual(k2, k, "its index.ts");
    const k3 = await changed(() => fs.writeFileSync(path.join(filters, "a", "filter.json"), '{"order":1}'));
    assert.notEqual(k3, k2, "its manifest");
    const k4 = await changed(() => fs.writeFileSync(path.join(filters, "_lib", "config.ts"), "export const c = 2;"));
    assert.notEqual(k4, k3, "a shared _ folder");
    const k5 = await changed(() => fs.writeFileSync(path.join(filters, "a", "util.ts"), "export const u = 1;"));
    assert.notEqual(k5, k4, "a new module in its folder");
    assert.notEqual(await buildKey(filters, "a", { optimize: true }), k5, "build options");
    assert.notEqual(await buildKey(filters, "b"), k5, "another filter's key");
  });

  test("names the toolchain it hashes", () => {
    assert.match(toolchainVersions(), /^assemblyscript@\d+\.\d+\.\d+ binaryen@\S+ @solo-io\/proxy-runtime@\d+\.\d+\.\d+\+wasmxds\.[0-9a-f]{12}$/);
  });
});
