// The watcher and Rust filters: a folder with a Cargo.toml is a filter, the files cargo reads
// (.rs, Cargo.toml, Cargo.lock) trigger builds, and cargo's target/ (run by hand in the folder)
// is never watched.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { listFilters, watchFilters, type FilterWatcher } from "../../../controlplane/compile/watcher.ts";
import { waitFor } from "./wait.ts";

describe("listFilters: Rust", () => {
  test("a folder with a Cargo.toml counts like one with an index.ts", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-list-rust-"));
    try {
      for (const name of ["as", "rs", "neither", "_shared"]) await mkdir(path.join(dir, name));
      await writeFile(path.join(dir, "as", "index.ts"), "");
      await writeFile(path.join(dir, "rs", "Cargo.toml"), "");
      await writeFile(path.join(dir, "neither", "lib.rs"), "");
      await writeFile(path.join(dir, "_shared", "Cargo.toml"), "");
      assert.deepEqual(await listFilters(dir), ["as", "rs"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("watchFilters: Rust", () => {
  let dir: string;
  let watcher: FilterWatcher;
  let events: string[] = [];
  const file = (...parts: string[]) => path.join(dir, ...parts);
  const seen = (event: string) => () => events.includes(event);
  const show = () => `events so far: ${JSON.stringify(events)}; watched: ${watcher.watched().length} paths`;

  /** Nothing else pending: a sentinel filter's event arrives after anything caused earlier. */
  async function settled(): Promise<void> {
    await writeFile(file("sentinel", "index.ts"), `// ${Date.now()} ${Math.random()}`);
    await waitFor(seen("changed sentinel"), () => `sentinel; ${show()}`);
    events = events.filter((e) => e !== "changed sentinel");
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-watch-rust-"));
    for (const d of ["r/src", "r/target/release", "sentinel"]) await mkdir(file(...d.split("/")), { recursive: true });
    await writeFile(file("r", "Cargo.toml"), "[package]");
    await writeFile(file("r", "src", "lib.rs"), "// r");
    await writeFile(file("sentinel", "index.ts"), "// s");
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

  test("src/*.rs, Cargo.toml and Cargo.lock edits each rebuild the filter", async () => {
    for (const f of [["src", "lib.rs"], ["src", "util.rs"], ["Cargo.toml"], ["Cargo.lock"]]) {
      events = [];
      await writeFile(file("r", ...f), `// ${Math.random()}`);
      await waitFor(seen("changed r"), () => `${f.join("/")}: ${show()}`);
    }
  });

  test("cargo's target/ inside the folder is not watched and triggers nothing", async () => {
    assert.ok(!watcher.watched().some((p) => p.split(path.sep).includes("target")), "no path under target/ is watched");
    events = [];
    await mkdir(file("r", "target", "wasm32-wasip1", "release"), { recursive: true });
    await writeFile(file("r", "target", "wasm32-wasip1", "release", "r.wasm"), "bytes");
    await writeFile(file("r", "target", "release", "build.rs"), "// generated");
    await settled();
    assert.deepEqual(events, []);
  });

  test("deleting Cargo.toml removes the filter; restoring it brings it back", async () => {
    events = [];
    await unlink(file("r", "Cargo.toml"));
    await waitFor(seen("removed r"), show);
    await writeFile(file("r", "Cargo.toml"), "[package]");
    await waitFor(seen("changed r"), show);
    assert.deepEqual(events.filter((e) => e.startsWith("error")), []);
  });
});
