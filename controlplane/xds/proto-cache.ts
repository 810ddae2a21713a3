// Envoy's resource types as protobufjs JSON, cached on disk: parsing the ~400 .proto files takes
// ~0.28 s of every start, loading their JSON ~0.07 s. The key covers everything the parse depends
// on (the loading code, the include list, the versions of the packages holding the .proto files
// and of protobufjs), so a stale cache is never read; a cache that cannot be written or read is
// parsed again. Field semantics survive the round trip: test/unit/xds/proto-cache.test.ts.

import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { REPO_ROOT } from "../paths.ts";

const CACHE_DIR = path.join(REPO_ROOT, "node_modules", ".cache", "wasm-xds");

function versionOf(pkg: string): string {
  const require = createRequire(import.meta.url);
  try {
    return (JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/** What a parsed root depends on, hashed. */
export function protoCacheKey(inputs: string[]): string {
  const hash = createHash("sha256");
  // The loading code itself (protos.ts and this file).
  hash.update(fs.readFileSync(fileURLToPath(new URL("./protos.ts", import.meta.url))));
  hash.update(fs.readFileSync(fileURLToPath(import.meta.url)));
  for (const input of inputs) hash.update(`\0${input}`);
  hash.update(`\0${versionOf("@grpc/grpc-js-xds")}\0${versionOf("protobufjs")}`);
  return hash.digest("hex").slice(0, 24);
}

/** The root from the cache for `key`, else `parse()`'s, which is then cached. */
export function cachedProtoRoot(key: string, parse: () => protobuf.Root): protobuf.Root {
  const file = path.join(CACHE_DIR, `envoy-root-${key}.json`);
  try {
    const root = protobuf.Root.fromJSON(JSON.parse(fs.readFileSync(file, "utf8")) as protobuf.INamespace);
    root.resolveAll();
    return root;
  } catch {
    // absent, or unreadable: parse
  }
  const root = parse();
  try {
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(root.toJSON()));
    fs.renameSync(tmp, file);
  } catch {
    // a read-only node_modules: parse on every start, as before
  }
  return root;
}
