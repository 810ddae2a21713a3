import fs from "node:fs";
import path from "node:path";
import protobuf from "protobufjs";
import { REPO_ROOT } from "../paths.ts";

/** Include roots for Envoy's protos, from proto/includes.json (they live in node_modules). */
export function protoIncludeDirs(): string[] {
  const listFile = path.join(REPO_ROOT, "proto", "includes.json");
  const parsed = JSON.parse(fs.readFileSync(listFile, "utf8")) as { roots: string[] };
  return parsed.roots.map((r) => path.join(REPO_ROOT, r));
}

/** Every .proto whose messages we author; their imports are pulled in transitively. */
const RESOURCE_PROTOS = [
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/core/v3/extension.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/wasm/v3/wasm.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/service/discovery/v3/discovery.proto",
  "google/protobuf/wrappers.proto",
];

let cachedRoot: protobuf.Root | undefined;

/** One protobufjs Root holding Envoy's resource types, loaded once per process. */
export function envoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const includeDirs = protoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (path.isAbsolute(target) && fs.existsSync(target)) return target;
    for (const dir of includeDirs) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    // google/protobuf/* not on disk are protobufjs built-ins; returning the name lets it use them.
    return target;
  };
  root.loadSync(RESOURCE_PROTOS, { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/**
 * How @grpc/proto-loader decodes discovery messages for the server and for test/bench clients:
 * field names as in the protos (snake_case, like Envoy YAML), enums by name, 64-bit ints as
 * strings, no default-filled fields (so "unset" stays distinguishable).
 */
export function discoveryLoaderOptions() {
  return { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: protoIncludeDirs() };
}
