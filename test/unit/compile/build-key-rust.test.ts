// The build cache key of a Rust filter (rustBuildKey): what cargo reads changes it, build output
// and unrelated files do not. Runs `rustc -vV` / `cargo -V` when installed; a missing toolchain
// hashes as "not found", so this needs no Rust.
import assert from "node:assert/strict";
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, beforeEach, describe, test } from "node:test";
import { rustBuildKey } from "../../../controlplane/compile/build-key.ts";

let root: string;
let filters: string;
const write = (rel: string, text: string): void => {
  fs.mkdirSync(path.dirname(path.join(filters, rel)), { recursive: true });
  fs.writeFileSync(path.join(filters, rel), text);
};
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "wasm-xds-rust-key-"));
  filters = path.join(root, "filters");
  for (const [file, text] of Object.entries({
    "r/Cargo.toml": "[package]\nname = \"r\"\n", "r/Cargo.lock": "version = 4\n", "r/src/lib.rs": "// r",
    "r/filter.json": "{}", "other/Cargo.toml": "[package]\nname = \"other\"\n", "_lib/config.ts": "export const c = 1;",
  })) write(file, text);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("rustBuildKey", () => {
  test("stable: the same inputs give the same key, whatever cargo left in target/", async () => {
    const k = await rustBuildKey(filters, "r");
    write("r/target/wasm32-wasip1/release/r.wasm", "output");
    write("r/target/release/.fingerprint/x", "output");
    write("r/src/.lib.rs.swp", "swap");
    write("r/src/lib.rs~", "backup");
    write("other/src/lib.rs", "// another filter");
    assert.equal(await rustBuildKey(filters, "r"), k);
  });

  test("every input cargo reads changes it", async () => {
    const keys = new Set([await rustBuildKey(filters, "r")]);
    const edits: [string, () => void][] = [
      ["src/lib.rs", () => write("r/src/lib.rs", "// r edited")],
      ["a new module", () => write("r/src/util.rs", "pub fn f() {}")],
      ["Cargo.toml", () => write("r/Cargo.toml", "[package]\nname = \"r\"\nversion = \"0.2.0\"\n")],
      ["Cargo.lock", () => write("r/Cargo.lock", "version = 4\n# changed\n")],
      ["no Cargo.lock (no --locked)", () => fs.rmSync(path.join(filters, "r", "Cargo.lock"))],
      ["build.rs", () => write("r/build.rs", "fn main() {}")],
      [".cargo/config.toml", () => write("r/.cargo/config.toml", "[build]\n")],
      ["a file include_str!'d", () => write("r/data/banner.txt", "hi")],
      ["filter.json", () => write("r/filter.json", '{"order": 3}')],
      ["a shared _ folder (path dependencies)", () => write("_lib/rust/lib.rs", "// shared")],
    ];
    for (const [what, edit] of edits) {
      edit();
      const k = await rustBuildKey(filters, "r");
      assert.ok(!keys.has(k), `${what} changes the key`);
      keys.add(k);
    }
  });

  test("RUSTFLAGS and cargo profile overrides from the environment change it", async () => {
    const k = await rustBuildKey(filters, "r");
    process.env.CARGO_PROFILE_RELEASE_OPT_LEVEL = "3";
    try {
      assert.notEqual(await rustBuildKey(filters, "r"), k);
    } finally {
      delete process.env.CARGO_PROFILE_RELEASE_OPT_LEVEL;
    }
    assert.equal(await rustBuildKey(filters, "r"), k);
  });

  test("another filter has another key", async () => {
    assert.notEqual(await rustBuildKey(filters, "other"), await rustBuildKey(filters, "r"));
  });
});
