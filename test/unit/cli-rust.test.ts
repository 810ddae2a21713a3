// `npm run filters -- new <name> --lang rust`: the Rust template scaffolded, and (when cargo is
// installed; always under CI) built by cargo and passing its own filter.test.json in the
// in-process host, as `npm run filters -- test` does.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../controlplane/cli/main.ts";
import { crateName, sortLockPackages } from "../../controlplane/cli/scaffold.ts";

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

const noCargo = spawnSync(process.env.CARGO || "cargo", ["-V"]).error !== undefined;

describe("filters CLI: new --lang rust", { timeout: 300_000 }, () => {
  let tmp: string;
  let filtersDir: string;
  const cacheHome = process.env.XDG_CACHE_HOME;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cli-rust-test-"));
    filtersDir = path.join(tmp, "filters");
    // cargo's output for the CLI goes to $XDG_CACHE_HOME/wasm-xds/cargo-target: keep it in tmp.
    process.env.XDG_CACHE_HOME = path.join(tmp, "cache");
  });
  after(() => {
    if (cacheHome === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = cacheHome;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("scaffolds a cargo crate: the name filled in everywhere, no AssemblyScript helper", async () => {
    const r = await cli(["new", "stamp-rs", "--lang", "rust"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 0, r.err);
    const dir = path.join(filtersDir, "stamp-rs");
    const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
    assert.deepEqual(files, [".gitignore", "Cargo.lock", "Cargo.toml", "filter.json", "filter.test.json", path.join("src", "lib.rs")]);
    const all = files.map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join("\n");
    assert.doesNotMatch(all, /__NAME__|__CLASS__|__CRATE__/);
    assert.match(fs.readFileSync(path.join(dir, "Cargo.toml"), "utf8"), /^name = "stamp-rs"$/m);
    assert.match(fs.readFileSync(path.join(dir, "Cargo.toml"), "utf8"), /crate-type = \["cdylib"\]/);
    assert.match(fs.readFileSync(path.join(dir, "src", "lib.rs"), "utf8"), /add_http_request_header\("x-stamp-rs"/);
    const lock = fs.readFileSync(path.join(dir, "Cargo.lock"), "utf8");
    const names = [...lock.matchAll(/^name = "([^"]+)"$/gm)].map((m) => m[1]!);
    assert.ok(names.includes("stamp-rs") && names.includes("proxy-wasm"));
    assert.deepEqual(names, [...names].sort(), "Cargo.lock sorted as cargo writes it");
    assert.equal(fs.existsSync(path.join(filtersDir, "_lib")), false, "Rust filters do not use _lib/config.ts");
    assert.match(r.out, /cargo/);
  });

  it("the Cargo package name is one cargo accepts for every valid filter name", () => {
    assert.equal(crateName("rate-limit"), "rate-limit");
    assert.equal(crateName("9lives"), "filter-9lives");
    assert.equal(crateName("self"), "filter-self");
    assert.equal(crateName("proc-macro"), "filter-proc-macro");
    assert.equal(crateName("_x"), "filter-_x");
  });

  it("sortLockPackages moves the renamed package where cargo keeps it", () => {
    const lock = '# head\nversion = 4\n\n[[package]]\nname = "b"\n\n[[package]]\nname = "zz"\n\n[[package]]\nname = "a"\n';
    assert.equal(sortLockPackages(lock), '# head\nversion = 4\n\n[[package]]\nname = "a"\n\n[[package]]\nname = "b"\n\n[[package]]\nname = "zz"\n');
  });

  it("an unknown --lang is a usage error (exit 2) naming the languages", async () => {
    const r = await cli(["new", "x", "--lang", "go"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown language "go": expected one of assemblyscript, rust/);
    assert.equal(fs.existsSync(path.join(filtersDir, "x")), false);
  });

  const skip = noCargo && process.env.CI !== "true" ? "cargo is not installed" : false;
  it("the scaffolded filter builds with cargo and passes its own cases (configuration included)", { skip }, async () => {
    const r = await cli(["test", "stamp-rs"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /root id "stamp-rs", proxy-wasm ABI 0\.2\.1: valid for Envoy/);
    assert.match(r.out, /all 2 cases passed/);
    const targets = fs.readdirSync(path.join(tmp, "cache", "wasm-xds", "cargo-target"));
    assert.ok(targets.some((d) => d.startsWith("stamp-rs-")), "cargo's output outside the filters folder");
    assert.equal(fs.existsSync(path.join(filtersDir, "stamp-rs", "target")), false);
  });
});
