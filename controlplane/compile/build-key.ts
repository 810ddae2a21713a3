// The build cache's key: a hash of everything that can change a filter's module. Two builds with
// the same key produce the same bytes, so a stored module with that key is reused instead of
// compiling (start-up with nothing changed, a touch, an editor's save of identical bytes).
//
// Inputs: the filter folder's .ts and .json files (index.ts, filter.json, its modules), the shared
// library folders (`_*` and `.*` at the top of the filters folder) and loose files there, which
// any filter may import; the entry's path as asc sees it (it ends up in abort messages); the
// versions of assemblyscript, binaryen and @solo-io/proxy-runtime; the compile flags. Not an
// input: a sibling filter's folder (the watcher does not rebuild on those either) and files the
// build never reads (editor backups, node_modules, links out of the filters folder).

import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import fs from "node:fs/promises";
import path from "node:path";
import { compileRecipe, type CompileOptions } from "./compiler.ts";
import { isInside } from "./watcher.ts";

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
  toolchain = [versionOf("assemblyscript"), versionOf("binaryen", path.dirname(asc)), versionOf("@solo-io/proxy-runtime")].join(" ");
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
