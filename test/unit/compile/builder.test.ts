import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildFilter, type BuildResult } from "../../../controlplane/compile/builder.ts";
import { closeCompiler, type CompileOutcome } from "../../../controlplane/compile/compiler.ts";
import { filterSource } from "./filter-source.ts";
import { wasmModule } from "./wasm-fixture.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

function errorOf(result: BuildResult): string {
  if (result.ok) assert.fail("build unexpectedly succeeded");
  return result.error;
}

/** A compile stand-in returning a module that passes validation, recording its calls. */
function fakeCompile(outcome?: CompileOutcome) {
  const calls: { entry: string; baseDir: string | undefined }[] = [];
  const wasm = wasmModule({ exports: ["proxy_abi_version_0_2_0", "malloc"] });
  return {
    calls,
    compile: async (entry: string, opts: { baseDir?: string }) => {
      calls.push({ entry, baseDir: opts.baseDir });
      return outcome ?? { ok: true as const, wasm, durationMs: 1, warnings: [] };
    },
  };
}

describe("buildFilter", () => {
  let filters: string;

  async function addFilter(name: string, files: Record<string, string>): Promise<void> {
    await mkdir(path.join(filters, name), { recursive: true });
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(filters, name, file), text);
  }

  before(async () => {
    filters = path.join(await mkdtemp(path.join(tmpdir(), "wasm-xds-builder-")), "filters");
    await mkdir(filters);
  });
  after(async () => {
    await closeCompiler();
    await rm(path.dirname(filters), { recursive: true, force: true });
  });

  test("builds the repository's add-header filter", async () => {
    const result = await buildFilter(path.join(REPO, "filters"), "add-header");
    if (!result.ok) assert.fail(result.error);
    assert.equal(result.name, "add-header");
    assert.equal(result.rootId, "add-header");
    assert.deepEqual(result.manifest, { order: 10 });
    assert.match(result.sha256, /^[0-9a-f]{64}$/);
    assert.ok(result.wasm.length > 1000);
    assert.ok(result.buildMs >= 0);
  });

  test("a compile error is reported with the filter name and file position", async () => {
    await addFilter("broken", { "index.ts": filterSource({ statement: "undefinedThing();" }) });
    const error = errorOf(await buildFilter(filters, "broken"));
    assert.match(error, /^broken: ERROR TS2304/);
    assert.match(error, /filters\/broken\/index\.ts\(\d+,\d+\)/);
  });

  test("root id: filter.json wins, else the source, else an error", async () => {
    const fake = fakeCompile();
    await addFilter("from-source", { "index.ts": filterSource({ rootId: "src-id" }) });
    const fromSource = await buildFilter(filters, "from-source", { compile: fake.compile });
    assert.equal(fromSource.ok && fromSource.rootId, "src-id");

    await addFilter("from-manifest", { "index.ts": "// registers elsewhere", "filter.json": `{"rootId": "m-id"}` });
    const fromManifest = await buildFilter(filters, "from-manifest", { compile: fake.compile });
    assert.equal(fromManifest.ok && fromManifest.rootId, "m-id");

    await addFilter("no-root", { "index.ts": "export * from \"@solo-io/proxy-runtime/proxy\";" });
    assert.equal(
      errorOf(await buildFilter(filters, "no-root", { compile: fake.compile })),
      'no-root: no root id: add rootId to filter.json or call registerRootContext(factory, "<id>")',
    );
  });

  test("a manifest root id the source does not register is an error", async () => {
    await addFilter("mismatch", { "index.ts": filterSource({ rootId: "real" }), "filter.json": `{"rootId": "other"}` });
    const fake = fakeCompile();
    assert.match(errorOf(await buildFilter(filters, "mismatch", { compile: fake.compile })), /^mismatch: filter\.json rootId "other" is not registered.*"real"/);
    assert.equal(fake.calls.length, 0, "no compile for a filter that cannot work");
  });

  test("a root id in the source outside the safe charset is an error", async () => {
    await addFilter("odd-root", { "index.ts": filterSource({ rootId: "has space" }) });
    const fake = fakeCompile();
    assert.match(errorOf(await buildFilter(filters, "odd-root", { compile: fake.compile })), /^odd-root: root id "has space" is not a valid root id \(1-128 characters/);
    assert.equal(fake.calls.length, 0);
  });

  test("files linked out of the filters folder are not read", async () => {
    const elsewhere = await mkdtemp(path.join(tmpdir(), "wasm-xds-elsewhere-"));
    try {
      await writeFile(path.join(elsewhere, "index.ts"), filterSource({ rootId: "linked" }));
      await writeFile(path.join(elsewhere, "secret.ts"), "export const SECRET: string = \"s3cret\";\n");
      await mkdir(path.join(filters, "linked-entry"));
      await symlink(path.join(elsewhere, "index.ts"), path.join(filters, "linked-entry", "index.ts"));
      const fake = fakeCompile();
      assert.match(errorOf(await buildFilter(filters, "linked-entry", { compile: fake.compile })), /^linked-entry: index\.ts resolves to .*outside the filters folder/);
      assert.equal(fake.calls.length, 0);

      // A library file linked in from elsewhere: asc does not get to read it (real compile).
      await addFilter("linked-lib", { "index.ts": `import { SECRET } from "./secret";\n${filterSource({ rootId: "linked-lib", statement: "if (SECRET.length == 0) return FilterHeadersStatusValues.Continue;" })}` });
      await symlink(path.join(elsewhere, "secret.ts"), path.join(filters, "linked-lib", "secret.ts"));
      assert.match(errorOf(await buildFilter(filters, "linked-lib")), /secret.*not found|File '.*secret\.ts' not found/);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  test("manifest errors carry the filter name and keep no manifest", async () => {
    await addFilter("bad-manifest", { "index.ts": filterSource(), "filter.json": `{"order": "first"}` });
    const result = await buildFilter(filters, "bad-manifest", { compile: fakeCompile().compile });
    assert.equal(errorOf(result), 'bad-manifest: filter.json: "order" must be an integer, got "first"');
    assert.equal(result.ok === false && result.manifest, undefined);
  });

  test("validation errors carry the filter name and the manifest", async () => {
    await addFilter("bad-imports", { "index.ts": filterSource(), "filter.json": `{"order": 5}` });
    const wasm = wasmModule({ imports: [{ module: "env", name: "seed" }], exports: ["proxy_abi_version_0_2_0", "malloc"] });
    const result = await buildFilter(filters, "bad-imports", {
      compile: fakeCompile({ ok: true, wasm, durationMs: 1, warnings: [] }).compile,
    });
    assert.match(errorOf(result), /^bad-imports: imports env\.seed/);
    assert.deepEqual(result.ok === false && result.manifest, { order: 5 });
  });

  test("compiles with diagnostics relative to the filters folder's parent", async () => {
    await addFilter("paths", { "index.ts": filterSource() });
    const fake = fakeCompile();
    await buildFilter(filters, "paths", { compile: fake.compile });
    assert.deepEqual(fake.calls, [{ entry: path.join(filters, "paths", "index.ts"), baseDir: path.dirname(filters) }]);
  });

  test("missing folder or bad name", async () => {
    assert.match(errorOf(await buildFilter(filters, "ghost")), /^ghost: no index\.ts in /);
    assert.match(errorOf(await buildFilter(filters, "../etc")), /^\.\.\/etc: invalid filter name/);
  });
});
