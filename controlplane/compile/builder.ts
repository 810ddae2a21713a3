// Builds one filter folder into a module that is ready to announce: manifest read, root id
// known, compiled, validated against Envoy's host functions, content-hashed.

import { createHash } from "node:crypto";
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { buildKey, rustBuildKey } from "./build-key.ts";
import { CARGO_MANIFEST, cargoBuild, cargoTargetDir, defaultCargoTargetRoot, type CargoBuildOptions } from "./cargo-build.ts";
import { compileFilter, type CompileOptions, type CompileOutcome } from "./compiler.ts";
import { FILTER_NAME_RULE, isValidFilterName, isValidRootId, readManifest, ROOT_ID_RULE, rootIdsFromSource, type Manifest } from "./manifest.ts";
import { validateModule, type ValidationResult } from "./validate.ts";
import { removeExports, RUST_TRIMMABLE_CALLBACKS, unusedCallbacks } from "./trim-exports.ts";
import { isInside } from "./watcher.ts";

export type BuildResult =
  | {
      ok: true;
      name: string;
      wasm: Uint8Array;
      /** Lowercase hex, the form Envoy compares remote code against. */
      sha256: string;
      rootId: string;
      manifest: Manifest;
      buildMs: number;
      /** Compiler warnings about the filter's own code (not asc's standard library). */
      warnings: string[];
      /**
       * Hash of the build's inputs (build-key.ts), when a cache was given and the inputs did not
       * change while compiling (otherwise the bytes may belong to neither version: not cacheable).
       */
      buildKey?: string;
      /** The module came from the build cache: nothing was compiled. */
      cached?: boolean;
    }
  | { ok: false; name: string; error: string; manifest?: Manifest; buildMs: number };

export interface BuildOptions {
  optimize?: boolean;
  /** Injected for tests; defaults to the asc worker. */
  compile?: (entryFile: string, opts: CompileOptions) => Promise<CompileOutcome>;
  validate?: (bytes: Uint8Array) => ValidationResult;
  /** Stored modules by build key: a hit is validated and returned without compiling. */
  cache?: BuildCache;
  /**
   * Where cargo writes Rust filters' build output (a folder per filter is made below it); keep
   * it outside the filters folder. Default: ~/.cache/wasm-xds/cargo-target.
   */
  cargoTargetDir?: string;
  /** Injected for tests; defaults to running cargo (cargo-build.ts). */
  cargo?: (filterDir: string, opts: CargoBuildOptions) => Promise<CompileOutcome>;
}

export interface BuildCache {
  lookup(name: string, buildKey: string): { sha256: string; wasm: Uint8Array } | undefined;
}

export async function buildFilter(
  filtersDir: string,
  name: string,
  opts: BuildOptions = {},
): Promise<BuildResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  // Every message starts with the filter name: they end up in logs and the admin API
  // next to other filters' results.
  const fail = (error: string, manifest?: Manifest): BuildResult => ({
    ok: false, name, error: `${name}: ${error}`, buildMs: elapsed(), ...(manifest ? { manifest } : {}),
  });

  if (!isValidFilterName(name)) {
    return fail(`invalid filter name (use ${FILTER_NAME_RULE})`);
  }
  const root = path.resolve(filtersDir);
  const dir = path.join(root, name);
  const entry = path.join(dir, "index.ts");

  // The language is the folder's entry file: index.ts (AssemblyScript) or Cargo.toml (Rust).
  const [isAssemblyScript, isRust] = await Promise.all([isFile(entry), isFile(path.join(dir, CARGO_MANIFEST))]);
  if (isAssemblyScript && isRust) {
    return fail("has both index.ts and Cargo.toml: a filter folder is either AssemblyScript (index.ts) or Rust (Cargo.toml)");
  }
  if (isRust) return buildRust(root, name, opts, fail, elapsed);

  // A link out of the filters folder is not followed, for the files read here as for the
  // watcher: index.ts and filter.json must resolve inside it (asc's reads: asc-run.ts).
  for (const file of [entry, path.join(dir, "filter.json")]) {
    const outside = await resolvesOutside(root, file);
    if (outside) return fail(`${path.basename(file)} resolves to ${outside}, outside the filters folder (links out of it are not followed)`);
  }

  let source: string;
  try {
    source = await readFile(entry, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(code === "ENOENT" ? `no index.ts in ${dir} (nor a Cargo.toml: a Rust filter)` : `cannot read index.ts: ${String(err)}`);
  }

  const parsed = await readManifest(dir);
  if (!parsed.ok) return fail(parsed.error);
  const manifest = parsed.manifest;

  const registered = rootIdsFromSource(source);
  const rootId = manifest.rootId ?? registered[0];
  if (rootId === undefined) {
    return fail(
      'no root id: add rootId to filter.json or call registerRootContext(factory, "<id>")',
      manifest,
    );
  }
  // filter.json's is checked when parsed; one from the source is checked here.
  if (!isValidRootId(rootId)) {
    return fail(`root id ${JSON.stringify(rootId)} is not a valid root id (${ROOT_ID_RULE})`, manifest);
  }
  // A root id the module never registers makes every Envoy VM fail at context creation.
  // Only checkable when index.ts itself registers (it may delegate to a library).
  if (registered.length > 0 && !registered.includes(rootId)) {
    return fail(
      `filter.json rootId "${rootId}" is not registered in index.ts ` +
        `(registerRootContext uses ${registered.map((id) => `"${id}"`).join(", ")})`,
      manifest,
    );
  }

  const key = opts.cache ? await buildKey(root, name, { optimize: opts.optimize }) : undefined;
  const hit = fromCache(name, key, rootId, manifest, opts, fail, elapsed);
  if (hit) return hit;

  const compile = opts.compile ?? compileFilter;
  // Diagnostics then name files as "filters/<name>/index.ts".
  const compiled = await compile(entry, {
    optimize: opts.optimize, baseDir: path.dirname(root), confineDir: root, ...(manifest.build ? { build: manifest.build } : {}),
  });
  if (!compiled.ok) return fail(compiled.error, manifest);

  const validation = (opts.validate ?? validateModule)(compiled.wasm);
  if (!validation.ok) return fail(validation.error, manifest);

  const result: BuildResult = {
    ok: true,
    name,
    wasm: compiled.wasm,
    sha256: createHash("sha256").update(compiled.wasm).digest("hex"),
    rootId,
    manifest,
    buildMs: elapsed(),
    warnings: compiled.warnings,
    cached: false,
  };
  // Inputs edited during the compile: the bytes are not keyed (the watcher has a rebuild owed).
  if (key !== undefined && key === (await buildKey(root, name, { optimize: opts.optimize }))) result.buildKey = key;
  return result;
}

type Fail = (error: string, manifest?: Manifest) => BuildResult;

/** The stored module built from the same inputs (key), validated again; undefined on a miss. */
function fromCache(
  name: string, key: string | undefined, rootId: string, manifest: Manifest, opts: BuildOptions, fail: Fail, elapsed: () => number,
): BuildResult | undefined {
  const hit = key !== undefined ? opts.cache?.lookup(name, key) : undefined;
  if (!hit || key === undefined) return undefined;
  // Validated again: the size limit (CP_MAX_MODULE_BYTES) may have changed since.
  const validation = (opts.validate ?? validateModule)(hit.wasm);
  if (!validation.ok) return fail(validation.error, manifest);
  return {
    ok: true, name, wasm: hit.wasm, sha256: hit.sha256, rootId, manifest, buildMs: elapsed(), warnings: [], buildKey: key, cached: true,
  };
}

/**
 * A Rust filter: filters/<name>/Cargo.toml, a cdylib using the proxy-wasm crate, built by cargo
 * (cargo-build.ts) and then handled exactly like an AssemblyScript build: validated, cached by
 * its inputs (rustBuildKey), stored and pushed by the caller.
 */
async function buildRust(root: string, name: string, opts: BuildOptions, fail: Fail, elapsed: () => number): Promise<BuildResult> {
  const dir = path.join(root, name);
  for (const file of [path.join(dir, CARGO_MANIFEST), path.join(dir, "filter.json")]) {
    const outside = await resolvesOutside(root, file);
    if (outside) {
      return fail(`${path.basename(file)} resolves to ${outside}, outside the filters folder (links out of it are not followed)`);
    }
  }
  const parsed = await readManifest(dir);
  if (!parsed.ok) return fail(parsed.error);
  const manifest = parsed.manifest;
  // The Rust SDK creates its one root context (set_root_context) for whatever root id Envoy
  // passes, so any id works: filter.json's, else the filter's name (a valid root id).
  const rootId = manifest.rootId ?? name;

  const key = opts.cache ? await rustBuildKey(root, name) : undefined;
  const hit = fromCache(name, key, rootId, manifest, opts, fail, elapsed);
  if (hit) return hit;

  const targetDir = await cargoTargetDir(opts.cargoTargetDir ?? defaultCargoTargetRoot(), dir);
  const compiled = await (opts.cargo ?? cargoBuild)(dir, { targetDir, baseDir: path.dirname(root) });
  if (!compiled.ok) return fail(compiled.error, manifest);
  // Like an AssemblyScript build (trim-exports.ts): Envoy skips a callback the module does not
  // export, so the ones the filter never overrides cost no call into the VM per request.
  let wasm = compiled.wasm;
  if (manifest.build?.trimExports !== false) {
    try {
      wasm = removeExports(wasm, unusedCallbacks(await rustSources(root, dir), RUST_TRIMMABLE_CALLBACKS));
    } catch (err) {
      return fail(`trimming the module's unused exports: ${(err as Error).message}`, manifest);
    }
  }
  const validation = (opts.validate ?? validateModule)(wasm);
  if (!validation.ok) return fail(validation.error, manifest);
  const result: BuildResult = {
    ok: true, name, wasm, sha256: createHash("sha256").update(wasm).digest("hex"),
    rootId, manifest, buildMs: elapsed(), warnings: compiled.warnings, cached: false,
  };
  // Inputs edited during the build: the bytes are not keyed (the watcher has a rebuild owed).
  if (key !== undefined && key === (await rustBuildKey(root, name))) result.buildKey = key;
  return result;
}

/**
 * The Rust the filter is made of, as far as trimming needs it: every .rs file of its folder and
 * of the filters folder's `.*` folders (where a shared path dependency lives, as the build key
 * assumes), without cargo's `target/`. A file read twice or an unrelated one only keeps exports.
 */
async function rustSources(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (folder: string, depth: number): Promise<void> => {
    if (depth > 8) return;
    const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(folder, e.name);
      if (e.isDirectory() && e.name !== "target") await walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith(".rs")) out.push(await readFile(p, "utf8"));
    }
  };
  await walk(dir, 0);
  for (const e of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory() && e.name.startsWith(".")) await walk(path.join(root, e.name), 1);
  }
  return out;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Where `file` really is when that is outside `root`; undefined when inside or missing. */
async function resolvesOutside(root: string, file: string): Promise<string | undefined> {
  try {
    const [realRoot, target] = await Promise.all([realpath(root), realpath(file)]);
    return isInside(realRoot, target) ? undefined : target;
  } catch {
    return undefined; // missing: reported where it is read
  }
}
