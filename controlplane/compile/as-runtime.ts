// Where AssemblyScript filters get `@solo-io/proxy-runtime` from: the corrected copy of 0.1.8
// kept in this repository (vendor/proxy-runtime-0.1.8-wasmxds/, with its license and a
// CHANGES.md listing every change against upstream), not the npm package.
//
// Why a vendored copy rather than patching node_modules at install: the compiler reads the
// runtime from a path under version control, so what is compiled is what was reviewed, on a
// fresh clone or a reused node_modules alike. A patch applied by a postinstall step is undone
// silently by anything that re-extracts the package (`npm ci --ignore-scripts`, `npm install`
// of another package, a cached node_modules in CI), and the broken runtime would come back
// with no error. The npm package stays a dependency only as the pristine upstream that
// test/unit/compile/as-runtime.test.ts diffs the copy against.

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The package name filters import. */
export const RUNTIME_PACKAGE = "@solo-io/proxy-runtime";

/** The corrected runtime: package.json, assembly/*.ts, LICENSE.txt, CHANGES.md. */
export const RUNTIME_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)), "..", "..", "vendor", "proxy-runtime-0.1.8-wasmxds",
);

let fingerprint: string | undefined;

/**
 * `@solo-io/proxy-runtime@<version>+wasmxds.<sha256 of the sources and of trim-exports.ts, 12 hex>`: part of the build
 * key (build-key.ts), so a change to the vendored runtime rebuilds every filter instead of
 * reusing modules compiled against the previous runtime.
 */
export function runtimeFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const hash = createHash("sha256");
  let version = "unknown";
  try {
    version = (JSON.parse(fs.readFileSync(path.join(RUNTIME_DIR, "package.json"), "utf8")) as { version: string }).version;
    const dir = path.join(RUNTIME_DIR, "assembly");
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".ts")).sort()) {
      hash.update(`${name}\n`).update(fs.readFileSync(path.join(dir, name))).update("\n");
    }
    // Which of the runtime's exports a module keeps is decided after asc, by trim-exports.ts:
    // a change there changes modules as a change of the runtime would.
    hash.update(fs.readFileSync(new URL("./trim-exports.ts", import.meta.url)));
  } catch (err) {
    // A missing runtime fails every compile with asc's own "file not found" anyway.
    hash.update(`unreadable: ${(err as Error).message}`);
  }
  fingerprint = `${RUNTIME_PACKAGE}@${version}+wasmxds.${hash.digest("hex").slice(0, 12)}`;
  return fingerprint;
}

/**
 * Maps a path asc asks for inside `<pinnedNodeModules>/@solo-io/proxy-runtime/` to the same
 * file in RUNTIME_DIR; undefined for any other path. asc looks packages up in every
 * node_modules above the filter and then in the pinned one (compiler.ts passes it as --path);
 * other copies of this package are hidden by asc-run.ts, so this is the only way in.
 */
export function runtimeFileFor(abs: string, pinnedNodeModules: string): string | undefined {
  const pkgRoot = path.join(pinnedNodeModules, ...RUNTIME_PACKAGE.split("/"));
  const rel = path.relative(pkgRoot, abs);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) return undefined;
  return path.join(RUNTIME_DIR, rel);
}
