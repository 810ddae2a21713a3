// The corrected proxy-runtime in vendor/ is a documented copy, never a silent fork: every file
// that differs from the npm package (the pristine upstream 0.1.8) is listed in its CHANGES.md,
// and the compiler reads the runtime from there.
import assert from "node:assert/strict";
import fs from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { RUNTIME_DIR, runtimeFileFor, runtimeFingerprint } from "../../../controlplane/compile/as-runtime.ts";
import { closeCompiler, compileFilter } from "../../../controlplane/compile/compiler.ts";
import { validateModule } from "../../../controlplane/compile/validate.ts";

const require = createRequire(import.meta.url);
const UPSTREAM_DIR = path.dirname(require.resolve("@solo-io/proxy-runtime/package.json"));

/** Files of a package folder, relative, sorted. */
function filesOf(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk("");
  return out.sort();
}

describe("vendor/proxy-runtime-0.1.8-wasmxds", () => {
  const changes = fs.readFileSync(path.join(RUNTIME_DIR, "CHANGES.md"), "utf8");

  test("is 0.1.8 with a license; every file that differs from npm's 0.1.8 is in CHANGES.md and marked in the source", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(RUNTIME_DIR, "package.json"), "utf8")) as { version: string; name: string };
    const upstreamPkg = JSON.parse(fs.readFileSync(path.join(UPSTREAM_DIR, "package.json"), "utf8")) as { version: string };
    assert.equal(pkg.name, "@solo-io/proxy-runtime");
    assert.equal(pkg.version, "0.1.8");
    assert.equal(upstreamPkg.version, "0.1.8", "npm's copy is the upstream this folder is compared with");
    assert.match(fs.readFileSync(path.join(RUNTIME_DIR, "LICENSE.txt"), "utf8"), /Apache License\s+Version 2\.0/);

    const ours = new Set(filesOf(RUNTIME_DIR));
    const changed: string[] = [];
    for (const file of filesOf(UPSTREAM_DIR)) {
      if (!ours.has(file)) {
        const name = path.basename(file).replace(/\./g, "\\.");
        assert.match(changes, new RegExp(`\`${name}\`.*left out`), `${file} missing: CHANGES.md says why`);
        continue;
      }
      const same = fs.readFileSync(path.join(UPSTREAM_DIR, file)).equals(fs.readFileSync(path.join(RUNTIME_DIR, file)));
      if (same) continue;
      changed.push(file);
      const row = new RegExp(`\\| \`${file.replace(/\./g, "\\.")}\` \\| changed`);
      assert.match(changes, row, `${file} differs from upstream: listed as changed in CHANGES.md`);
      assert.match(fs.readFileSync(path.join(RUNTIME_DIR, file), "utf8"), /wasm-xds:/, `${file}: changes marked in the source`);
    }
    assert.deepEqual(changed, ["assembly/exports.ts", "assembly/imports.ts", "assembly/runtime.ts"]);
    for (const file of ours) {
      if (!fs.existsSync(path.join(UPSTREAM_DIR, file))) assert.ok(["CHANGES.md", "LICENSE.txt"].includes(file), `${file} added: listed`);
    }
  });

  test("the runtime's fingerprint names the version and hashes the sources (a build-key input)", () => {
    assert.match(runtimeFingerprint(), /^@solo-io\/proxy-runtime@0\.1\.8\+wasmxds\.[0-9a-f]{12}$/);
  });

  test("runtimeFileFor maps the pinned package's files into vendor/, nothing else", () => {
    const pinned = "/repo/node_modules";
    const runtimeTs = runtimeFileFor("/repo/node_modules/@solo-io/proxy-runtime/assembly/runtime.ts", pinned);
    assert.equal(runtimeTs, path.join(RUNTIME_DIR, "assembly/runtime.ts"));
    assert.equal(runtimeFileFor("/repo/node_modules/@solo-io/proxy-runtime/package.json", pinned), path.join(RUNTIME_DIR, "package.json"));
    assert.equal(runtimeFileFor("/repo/node_modules/@solo-io/proxy-runtimex/package.json", pinned), undefined);
    assert.equal(runtimeFileFor("/repo/node_modules/assemblyscript/package.json", pinned), undefined);
    assert.equal(runtimeFileFor("/elsewhere/node_modules/@solo-io/proxy-runtime/package.json", pinned), undefined);
  });
});

describe("compiling against the vendored runtime", () => {
  let scratch: string | undefined;
  after(async () => {
    await closeCompiler();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("a filter gets the corrected bindings (names only the vendored copy has)", async () => {
    scratch = await mkdtemp(path.join(tmpdir(), "wasm-xds-runtime-"));
    const dir = path.join(scratch, "filters", "bindings");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "index.ts");
    await writeFile(file, `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterDataStatusValues } from "@solo-io/proxy-runtime";
import { set_buffer_bytes, get_buffer_status, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";
class R extends RootContext { createContext(id: u32): Context { return new C(id, this); } }
class C extends Context {
  onResponseBody(n: usize, end: bool): FilterDataStatusValues {
    const s = get_buffer_status(BufferTypeValues.HttpResponseBody);
    set_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, <u32>s.length, new ArrayBuffer(1));
    return FilterDataStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new R(id), "bindings");
`);
    // Untrimmed: the runtime's own exports are checked (trimming would drop the unused gRPC ones).
    const out = await compileFilter(file, { baseDir: scratch, build: { trimExports: false } });
    if (!out.ok) assert.fail(out.error);
    const validation = validateModule(out.wasm);
    assert.ok(validation.ok, validation.ok ? "" : validation.error);
    const module = new WebAssembly.Module(new Uint8Array(out.wasm));
    const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
    assert.ok(imports.includes("env.proxy_set_buffer_bytes"), imports.join());
    assert.equal(imports.filter((i) => i === "env.proxy_get_buffer_status").length, 1, "one import per host function");
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    assert.ok(exports.includes("proxy_on_grpc_receive_trailing_metadata"));
    assert.ok(!exports.includes("proxy_on_grpc_trailing_metadata"));
  });
});
