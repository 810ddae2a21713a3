import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { renameSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, realpath, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { listFilters, watchFilters, type FilterWatcher } from "../../../controlplane/compile/watcher.ts";
import { waitFor } from "./wait.ts";

describe("listFilters", () => {
  test("valid-named folders with an index.ts, sorted", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-list-"));
    try {
      for (const name of ["zeta", "alpha", "_lib", ".hidden", "Upper", "no-entry"]) await mkdir(path.join(dir, name));
      for (const name of ["zeta", "alpha", "_lib", ".hidden", "Upper"]) await writeFile(path.join(dir, name, "index.ts"), "");
      await writeFile(path.join(dir, "loose.ts"), "");
      await symlink(path.join(dir, "alpha"), path.join(dir, "linked"));
      assert.deepEqual(await listFilters(dir), ["alpha", "linked", "zeta"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("watchFilters", () => {
  let dir: string;
  let watcher: FilterWatcher;
  let events: string[] = [];
  const file = (...parts: string[]) => path.join(dir, ...parts);
  const seen = (event: string) => () => events.includes(event);
  const show = () => `events so far: ${JSON.stringify(events)}`;

  /**
   * Proves that nothing else is pending: touches a sentinel filter and waits for its event.
   * Events are debounced per filter with the same delay, so anything caused earlier has
   * been delivered by then.
   */
  async function settled(): Promise<void> {
    await writeFile(file("sentinel", "index.ts"), `// ${Date.now()} ${Math.random()}`);
    await waitFor(seen("changed sentinel"), () => `sentinel; ${show()}`);
    events = events.filter((e) => e !== "changed sentinel");
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-watch-"));
    for (const name of ["a", "b", "sentinel", "_lib"]) await mkdir(file(name));
    await writeFile(file("a", "index.ts"), "// a");
    await writeFile(file("b", "index.ts"), "// b");
    await writeFile(file("sentinel", "index.ts"), "// s");
    await writeFile(file("_lib", "config.ts"), "// lib");
    watcher = watchFilters(dir, {
      changed: (name) => void events.push(`changed ${name}`),
      removed: (name) => void events.push(`removed ${name}`),
      error: (err) => void events.push(`error ${err.message}`),
    }, { debounceMs: 60 });
    await watcher.ready;
  });
  after(async () => {
    await watcher.close();
    await rm(dir, { recursive: true, force: true });
  });
  // Absorb stragglers from the previous test (a new file can be reported as add, then
  // change) so that each test sees only what it caused.
  beforeEach(async () => {
    await settled();
    events = [];
  });

  test("the initial scan reports nothing", async () => {
    await settled();
    assert.deepEqual(events, []);
  });

  test("an edit of index.ts", async () => {
    await writeFile(file("a", "index.ts"), "// a edited");
    await waitFor(seen("changed a"), show);
  });

  // Editor-like sequences use synchronous calls so each lands as one burst, as an editor's would.
  test("an atomic save (write a temp file, rename it over index.ts)", async () => {
    writeFileSync(file("a", "index.ts.tmp"), "// a saved atomically");
    renameSync(file("a", "index.ts.tmp"), file("a", "index.ts"));
    await waitFor(seen("changed a"), show);
    await settled();
    assert.deepEqual(events, ["changed a"], "one event, and no removal");
  });

  test("a burst of writes (truncate then write, repeatedly) is one change", async () => {
    for (let i = 0; i < 5; i++) {
      truncateSync(file("b", "index.ts"));
      writeFileSync(file("b", "index.ts"), `// b ${i}`);
    }
    await waitFor(seen("changed b"), show);
    await settled();
    assert.deepEqual(events, ["changed b"]);
  });

  test("delete and recreate of index.ts (vim without backupcopy) is a change", async () => {
    renameSync(file("a", "index.ts"), file("a", "index.ts~"));
    writeFileSync(file("a", "index.ts"), "// a rewritten");
    unlinkSync(file("a", "index.ts~"));
    await waitFor(seen("changed a"), show);
    await settled();
    assert.deepEqual(events, ["changed a"]);
  });

  test("other files in the filter folder and filter.json count", async () => {
    await writeFile(file("a", "helper.ts"), "// helper");
    await waitFor(seen("changed a"), show);
    events = [];
    await writeFile(file("b", "filter.json"), `{"order": 1}`);
    await waitFor(seen("changed b"), show);
  });

  test("editor droppings and node_modules are ignored", async () => {
    await writeFile(file("a", ".index.ts.swp"), "swap");
    await writeFile(file("a", "index.ts~"), "backup");
    await writeFile(file("a", ".#index.ts"), "emacs lock");
    await writeFile(file("a", "4913"), "vim probe");
    await writeFile(file("a", "notes.md"), "not a source");
    await mkdir(file("a", "node_modules"), { recursive: true });
    await writeFile(file("a", "node_modules", "x.ts"), "dependency");
    await settled();
    assert.deepEqual(events, []);
  });

  test("a shared library change rebuilds every filter", async () => {
    await writeFile(file("_lib", "config.ts"), "// lib edited");
    await waitFor(() => ["a", "b", "sentinel"].every((n) => events.includes(`changed ${n}`)), show);
    assert.ok(!events.some((e) => e.includes("_lib")), show());
  });

  test("a new folder becomes a filter once it has an index.ts", async () => {
    await mkdir(file("c"));
    await settled();
    assert.deepEqual(events, [], "no index.ts yet");
    await writeFile(file("c", "index.ts"), "// c");
    await waitFor(seen("changed c"), show);
  });

  test("a folder with an invalid name is not a filter", async () => {
    await mkdir(file("Bad Name"));
    await writeFile(file("Bad Name", "index.ts"), "// nope");
    await settled();
    assert.deepEqual(events, []);
  });

  test("deleting index.ts removes the filter; restoring it brings it back", async () => {
    await unlink(file("c", "index.ts"));
    await waitFor(seen("removed c"), show);
    await writeFile(file("c", "index.ts"), "// c again");
    await waitFor(seen("changed c"), show);
  });

  test("deleting a filter folder removes the filter, once", async () => {
    await rm(file("b"), { recursive: true });
    await waitFor(seen("removed b"), show);
    await settled();
    assert.deepEqual(events, ["removed b"]);
  });

  test("renaming a filter folder removes the old name and adds the new one", async () => {
    await rename(file("c"), file("d"));
    await waitFor(() => events.includes("removed c") && events.includes("changed d"), show);
  });

  test("no watcher errors", () => {
    assert.deepEqual(events.filter((e) => e.startsWith("error")), []);
  });
});

describe("watchFilters: names it ignores, and links", () => {
  test("an invalid folder name is reported once with the rule; a link out of the folder is not followed", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-watch-links-"));
    const outside = await mkdtemp(path.join(tmpdir(), "wasm-xds-big-"));
    const events: string[] = [];
    const ignored: [string, string][] = [];
    let watcher: FilterWatcher | undefined;
    try {
      // A big tree outside (like node_modules), linked into the filters folder.
      for (let i = 0; i < 200; i++) {
        await mkdir(path.join(outside, `pkg${i}`, "lib"), { recursive: true });
        await writeFile(path.join(outside, `pkg${i}`, "lib", "index.ts"), "// x");
      }
      await writeFile(path.join(outside, "index.ts"), "// a filter-looking entry");
      for (const name of ["a", "sentinel", "Bad Name", "_lib"]) await mkdir(path.join(dir, name));
      await writeFile(path.join(dir, "a", "index.ts"), "// a");
      await writeFile(path.join(dir, "sentinel", "index.ts"), "// s");
      await symlink(outside, path.join(dir, "node-modules-link"));
      await symlink(path.join(dir, "a"), path.join(dir, "inside-link"));

      assert.deepEqual(await listFilters(dir), ["a", "inside-link", "sentinel"], "a link to a folder inside counts, one out does not");
      watcher = watchFilters(dir, {
        changed: (name) => void events.push(`changed ${name}`),
        removed: (name) => void events.push(`removed ${name}`),
        ignored: (name, reason) => void ignored.push([name, reason]),
      }, { debounceMs: 60 });
      await watcher.ready;

      const watched = watcher.watched();
      const real = await realpath(outside);
      assert.ok(!watched.some((p) => p.startsWith(path.join(dir, "node-modules-link") + path.sep) || p.startsWith(real + path.sep)),
        `nothing under the link is watched: ${watched.filter((p) => p.includes("pkg")).slice(0, 5).join(", ")}`);
      assert.ok(watched.length < 40, `a handful of paths, not the linked tree: ${watched.length}`);

      // Touch the invalid folder again and create another one: each name is reported once.
      await writeFile(path.join(dir, "Bad Name", "index.ts"), "// not a filter");
      await mkdir(path.join(dir, "Also.Bad"));
      await writeFile(path.join(dir, "sentinel", "index.ts"), `// ${Date.now()}`);
      await waitFor(() => events.includes("changed sentinel") && ignored.some(([n]) => n === "Also.Bad"), () => `events ${JSON.stringify(events)} ignored ${JSON.stringify(ignored)}`);
      // An edit inside the linked tree reaches nobody.
      await writeFile(path.join(outside, "index.ts"), "// edited");
      events.length = 0;
      await writeFile(path.join(dir, "sentinel", "index.ts"), `// ${Date.now()} again`);
      await waitFor(() => events.includes("changed sentinel"), () => `events ${JSON.stringify(events)}`);

      assert.deepEqual(events, ["changed sentinel"], "the edit through the link was not seen");
      const names = ignored.map(([n]) => n).sort();
      assert.deepEqual(names, ["Also.Bad", "Bad Name", "node-modules-link"], "each once");
      assert.match(ignored.find(([n]) => n === "Bad Name")![1], /not a valid filter name \(use a-z, 0-9/);
      assert.match(ignored.find(([n]) => n === "node-modules-link")![1], /symbolic link out of the filters folder/);
    } finally {
      await watcher?.close();
      await rm(dir, { recursive: true, force: true });
      await rm(outside, { recursive: true, force: true });
    }
  });
});
