// buildFilter's language dispatch: a folder with a Cargo.toml is built by cargo (injected here:
// the real one runs in test/e2e/rust-filter.test.ts), then validated and cached exactly like
// an AssemblyScript build.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildFilter, type BuildResult } from "../../../controlplane/compile/builder.ts";
import type { CargoBuildOptions } from "../../../controlplane/compile/cargo-build.ts";
import type { CompileOutcome } from "../../../controlplane/compile/compiler.ts";
import { wasmModule } from "./wasm-fixture.ts";

const RUST_SHAPED = wasmModule({
  imports: [{ module: "env", name: "proxy_log" }, { module: "wasi_snapshot_preview1", name: "fd_write" }],
  exports: ["_initialize", "proxy_on_memory_allocate", "proxy_abi_version_0_2_1"],
});

function fakeCargo(outcome: CompileOutcome = { ok: true, wasm: RUST_SHAPED, durationMs: 1, warnings: [] }) {
  const calls: { dir: string; opts: CargoBuildOptions }[] = [];
  return { calls, cargo: async (dir: string, opts: CargoBuildOptions) => (calls.push({ dir, opts }), outcome) };
}

function errorOf(result: BuildResult): string {
  if (result.ok) assert.fail("build unexpectedly succeeded");
  return result.error;
}

describe("buildFilter: Rust filters", () => {
  let filters: string;
  const add = async (name: string, files: Record<string, string>) => {
    for (const [file, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(filters, name, file)), { recursive: true });
      await writeFile(path.join(filters, name, file), text);
    }
  };
  before(async () => {
    filters = path.join(await mkdtemp(path.join(tmpdir(), "wasm-xds-builder-rust-")), "filters");
    await add("hello", { "Cargo.toml": "[package]\nname = \"hello\"\n", "src/lib.rs": "// hello" });
  });
  after(async () => {
    await rm(path.dirname(filters), { recursive: true, force: true });
  });

  test("a Cargo.toml folder goes to cargo with a target folder outside the filters folder; root id = name", async () => {
    const { calls, cargo } = fakeCargo();
    const r = await buildFilter(filters, "hello", { cargo, cargoTargetDir: "/state/cargo-target" });
    assert.ok(r.ok, r.ok ? "" : r.error);
    assert.equal(r.rootId, "hello", "the Rust SDK answers any root id: the filter's name");
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.dir, path.join(filters, "hello"));
    assert.match(calls[0]!.opts.targetDir, /^\/state\/cargo-target\/hello-[0-9a-f]{12}$/);
    assert.equal(calls[0]!.opts.baseDir, path.dirname(filters), "diagnostics name filters/hello/...");
  });

  test("filter.json's rootId and settings apply as for AssemblyScript", async () => {
    await add("configured", { "Cargo.toml": "[package]", "filter.json": '{"rootId": "my_root", "order": 7}' });
    const r = await buildFilter(filters, "configured", { cargo: fakeCargo().cargo });
    assert.ok(r.ok);
    assert.equal(r.rootId, "my_root");
    assert.equal(r.manifest.order, 7);
    await add("bad-manifest", { "Cargo.toml": "[package]", "filter.json": '{"ordr": 1}' });
    assert.match(errorOf(await buildFilter(filters, "bad-manifest", { cargo: fakeCargo().cargo })), /^bad-manifest: filter\.json: unknown key "ordr"/);
  });

  test("cargo's error becomes the filter's build error", async () => {
    const { cargo } = fakeCargo({ ok: false, error: "filters/hello/src/lib.rs:3:5: error[E0425]: cannot find value `x`", durationMs: 1 });
    assert.equal(errorOf(await buildFilter(filters, "hello", { cargo })), "hello: filters/hello/src/lib.rs:3:5: error[E0425]: cannot find value `x`");
  });

  test("the module is validated like any other", async () => {
    const { cargo } = fakeCargo({ ok: true, wasm: wasmModule({ exports: ["proxy_on_memory_allocate"] }), durationMs: 1, warnings: [] });
    assert.match(errorOf(await buildFilter(filters, "hello", { cargo })), /^hello: exports neither proxy_abi_version_0_2_0 nor proxy_abi_version_0_2_1/);
  });

  test("a cache hit skips cargo; the key is the Rust one and is stable across builds", async () => {
    const first = fakeCargo();
    const miss = await buildFilter(filters, "hello", { cargo: first.cargo, cache: { lookup: () => undefined } });
    assert.ok(miss.ok && miss.buildKey && miss.cached === false);
    const second = fakeCargo();
    const stored = new Map([[miss.buildKey, { sha256: miss.sha256, wasm: miss.wasm }]]);
    const hit = await buildFilter(filters, "hello", { cargo: second.cargo, cache: { lookup: (_n, key) => stored.get(key) } });
    assert.ok(hit.ok && hit.cached === true);
    assert.equal(hit.sha256, miss.sha256);
    assert.equal(second.calls.length, 0, "cargo did not run");
  });

  test("a folder with both index.ts and Cargo.toml is refused, naming both", async () => {
    await add("both", { "Cargo.toml": "[package]", "index.ts": "export {}" });
    const { calls, cargo } = fakeCargo();
    assert.match(errorOf(await buildFilter(filters, "both", { cargo })), /^both: has both index\.ts and Cargo\.toml/);
    assert.equal(calls.length, 0);
  });

  test("a folder with neither says what it looks for", async () => {
    await add("empty", { "README.md": "x" });
    const error = errorOf(await buildFilter(filters, "empty", { cargo: fakeCargo().cargo }));
    assert.match(error, /^empty: no index\.ts in .* \(nor a Cargo\.toml: a Rust filter\)$/);
  });
});
