// The build cache's key: a hash of everything that can change a filter's module. Two builds with
// the same key produce the same bytes, so a stored module with that key is reused instead of
// compiling (start-up with nothing changed, a touch, an editor's save of identical bytes).
//
// Inputs: the filter folder's .ts and .json files (index.ts, filter.json, its modules), the shared
// library folders (`_*` and `.*` at the top of the filters folder) and loose files there, which
// any filter may import; the entry's path as asc sees it (it ends up in abort messages); the
// versions of assemblyscript and binaryen, the vendored proxy-runtime's version and source hash
// (as-runtime.ts); the compile flags. Not an
// input: a sibling filter's folder (the watcher does not rebuild on those either) and files the
// build never reads (editor backups, node_modules, links out of the filters folder).

import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import fs from "node:fs/promises";
import path from "node:path";
import { compileRecipe, type CompileOptions } from "./compiler.ts";
import { isInside } from "./watcher.ts";
import { runtimeFingerprint } from "./as-runtime.ts";
import { CARGO_LOCK, cargoRecipe, rustToolchainVersion } from "./cargo-build.ts";

/** Bump when the meaning of a key changes (what is hashed, or how the builder uses the output). */
const KEY_VERSION = "wasm-xds build key 1";

let toolchain: string | undefined;

/** Package versions that shape the output, read once. */
export function toolchainVersions(): string {
  if (toolchain !== undefined) return toolchain;
  const require = createRequire(import.meta.url);
  const versionOf = (pkg: string, from?: string): string => {
    try {
      const file = require.resolve(`${pkg}/package.json`, from ? { paths: [from] } : undefined);
      return `${pkg}@${(require(file) as { version: string }).version}`;
    } catch {
      return `${pkg}@unknown`;
    }
  };
  const asc = require.resolve("assemblyscript/package.json");
  toolchain = [versionOf("assemblyscript"), versionOf("binaryen", path.dirname(asc)), runtimeFingerprint()].join(" ");
  return toolchain;
}

/**
 * The key of building `filtersDir/name` with `opts`. Reads and hashes the inputs; throws only on
 * an unreadable filters folder (a missing file simply hashes as absent).
 */
export async function buildKey(filtersDir: string, name: string, opts: Pick<CompileOptions, "optimize"> = {}): Promise<string> {
  const root = await fs.realpath(path.resolve(filtersDir));
  const hash = createHash("sha256");
  hash.update(`${KEY_VERSION}\n${toolchainVersions()}\n${compileRecipe(opts).join(" ")}\n`);
  hash.update(`entry ${path.join(path.basename(path.resolve(filtersDir)), name, "index.ts")}\n`);
  const entries = await fs.readdir(root, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const shared = /^[_.]/.test(entry.name) && entry.name !== ".git";
    if (entry.name === name || shared) await hashTree(hash, root, path.join(root, entry.name), entry.name);
    else if (entry.isFile() && isSource(entry.name)) await hashFile(hash, root, path.join(root, entry.name), entry.name);
  }
  return hash.digest("hex");
}

function isSource(file: string): boolean {
  return /\.(ts|json)$/.test(file);
}

/** Hashes the sources under `dir` (a folder or a link to one), as `rel`, in a stable order. */
async function hashTree(hash: ReturnType<typeof createHash>, root: string, dir: string, rel: string, depth = 0): Promise<void> {
  if (depth > 32) return;
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch {
    return;
  }
  // A link out of the filters folder is never read by the build (asc-run.ts confinement).
  if (!isInside(root, real)) {
    hash.update(`outside ${rel}\n`);
    return;
  }
  let entries;
  try {
    entries = await fs.readdir(real, { withFileTypes: true });
  } catch {
    // A file, or unreadable: hashed as a file (or as missing).
    if (depth > 0 && isSource(rel)) await hashFile(hash, root, dir, rel);
    return;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const child = path.join(real, entry.name);
    const childRel = `${rel}/${entry.name}`;
    if (entry.isDirectory()) await hashTree(hash, root, child, childRel, depth + 1);
    else if (entry.isSymbolicLink()) {
      const stat = await fs.stat(child).catch(() => undefined);
      if (stat?.isDirectory()) hash.update(`dirlink ${childRel} -> ${await fs.readlink(child).catch(() => "?")}\n`);
      else if (isSource(entry.name)) await hashFile(hash, root, child, childRel);
    } else if (entry.isFile() && isSource(entry.name)) await hashFile(hash, root, child, childRel);
  }
}

async function hashFile(hash: ReturnType<typeof createHash>, root: string, file: string, rel: string): Promise<void> {
  try {
    const real = await fs.realpath(file);
    if (!isInside(root, real)) {
      hash.update(`outside ${rel}\n`);
      return;
    }
    const content = await fs.readFile(real);
    hash.update(`file ${rel} ${createHash("sha256").update(content).digest("hex")}\n`);
  } catch {
    hash.update(`missing ${rel}\n`);
  }
}

/** Bump when the meaning of a Rust filter's key changes. */
const RUST_KEY_VERSION = "wasm-xds rust build key 2 (unused callbacks unexported)";

// Environment that changes what cargo builds; anything else it reads (CARGO_HOME, proxies) only
// changes where crates come from, and Cargo.lock pins their checksums.
const RUST_BUILD_ENV = new RegExp(
  "^(RUSTFLAGS|CARGO_ENCODED_RUSTFLAGS|CARGO_BUILD_\\w+|CARGO_PROFILE_\\w+|CARGO_TARGET_WASM32_WASIP1_\\w+|RUSTC|RUSTC_WRAPPER|RUSTUP_TOOLCHAIN)$",
);

/**
 * The key of building the Rust filter `filtersDir/name` (Cargo.toml): every file of its folder
 * (Cargo.toml, Cargo.lock, src/**, build.rs, .cargo/config.toml, filter.json and whatever it
 * include_str!s) except build output (`target/` folders, never read as input), the shared `_*` and
 * `.*` folders at the top of the filters folder (a path dependency may live there), the rustc
 * and cargo versions as seen from the folder (rust-toolchain.toml), the cargo argv and the
 * environment that shapes the output. Crates from crates.io are covered by Cargo.lock's
 * checksums; without a Cargo.lock the key has no pin on them (cargo resolves the newest).
 */
export async function rustBuildKey(filtersDir: string, name: string): Promise<string> {
  const root = await fs.realpath(path.resolve(filtersDir));
  const dir = path.join(root, name);
  const hash = createHash("sha256");
  const locked = await fs.stat(path.join(dir, CARGO_LOCK)).then((s) => s.isFile(), () => false);
  const env = Object.keys(process.env).filter((k) => RUST_BUILD_ENV.test(k)).sort().map((k) => `${k}=${process.env[k]}`);
  hash.update(`${RUST_KEY_VERSION}\n${await rustToolchainVersion(dir)}\n${cargoRecipe(locked).join(" ")}\n${env.join("\n")}\n`);
  const entries = await fs.readdir(root, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const shared = /^[_.]/.test(entry.name) && entry.name !== ".git";
    if (entry.name === name || shared) await hashRustTree(hash, root, path.join(root, entry.name), entry.name);
  }
  return hash.digest("hex");
}

/** Every file under `dir` but build output, editor droppings and version-control folders. */
async function hashRustTree(hash: ReturnType<typeof createHash>, root: string, dir: string, rel: string, depth = 0): Promise<void> {
  if (depth > 32) return;
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch {
    return;
  }
  if (!isInside(root, real)) {
    hash.update(`outside ${rel}\n`);
    return;
  }
  let entries;
  try {
    entries = await fs.readdir(real, { withFileTypes: true });
  } catch {
    if (depth > 0) await hashFile(hash, root, dir, rel);
    return;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name === "target" || entry.name === "node_modules" || entry.name === ".git" || isEditorDropping(entry.name)) continue;
    const child = path.join(real, entry.name);
    const childRel = `${rel}/${entry.name}`;
    const stat = entry.isSymbolicLink() ? await fs.stat(child).catch(() => undefined) : undefined;
    if (entry.isDirectory() || stat?.isDirectory()) await hashRustTree(hash, root, child, childRel, depth + 1);
    else if (entry.isFile() || stat?.isFile()) await hashFile(hash, root, child, childRel);
  }
}

function isEditorDropping(file: string): boolean {
  return /\.(swp|swx|swo)$|~$/.test(file) || file === "4913" || file.startsWith(".#");
}
