import fs from "node:fs";
import path from "node:path";
import protobuf from "protobufjs";
import { REPO_ROOT } from "../paths.ts";
import { cachedProtoRoot, protoCacheKey } from "./proto-cache.ts";

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
  // The native no-op a disabled filter becomes on an ECDS-only Envoy (resources.ts NATIVE_NOOP_FILTER_TYPE).
  "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/service/discovery/v3/discovery.proto",
  "google/protobuf/wrappers.proto",
];

let cachedRoot: protobuf.Root | undefined;

/** One protobufjs Root holding Envoy's resource types, loaded once per process. */
export function envoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const includes = fs.readFileSync(path.join(REPO_ROOT, "proto", "includes.json"), "utf8");
  cachedRoot = cachedProtoRoot(protoCacheKey([includes, ...RESOURCE_PROTOS]), parseEnvoyRoot);
  return cachedRoot;
}

/** Parses Envoy's .proto files (the cache's miss path). */
export function parseEnvoyRoot(): protobuf.Root {
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
  addWasmFailurePolicy(root);
  root.resolveAll();
  return root;
}

/**
 * PluginConfig's `failure_policy` and `reload_config`, which the Envoy protos in
 * @grpc/grpc-js-xds predate (there, only the deprecated `fail_open` = 5 exists). Our own
 * definition of the wire format, not a copy of Envoy's .proto text. Numbers read from the
 * FileDescriptorProto of envoy/extensions/wasm/v3/wasm.proto embedded in the Envoy 1.40.0
 * binary (.tools/bin/envoy): PluginConfig.failure_policy = 7 (enum
 * envoy.extensions.wasm.v3.FailurePolicy), PluginConfig.reload_config = 8 (message
 * envoy.extensions.wasm.v3.ReloadConfig { envoy.config.core.v3.BackoffStrategy backoff = 1; }),
 * FailurePolicy { UNSPECIFIED = 0; FAIL_RELOAD = 1; FAIL_CLOSED = 2; FAIL_OPEN = 3; }.
 * Envoy rejects a PluginConfig that sets both fail_open and failure_policy.
 * Skipped field by field when a newer proto set already defines them.
 */
function addWasmFailurePolicy(root: protobuf.Root): void {
  const ns = root.lookup("envoy.extensions.wasm.v3");
  if (!(ns instanceof protobuf.Namespace)) throw new Error("protos: envoy.extensions.wasm.v3 not loaded");
  if (!ns.get("FailurePolicy")) {
    ns.add(new protobuf.Enum("FailurePolicy", { UNSPECIFIED: 0, FAIL_RELOAD: 1, FAIL_CLOSED: 2, FAIL_OPEN: 3 }));
  }
  if (!ns.get("ReloadConfig")) {
    ns.add(new protobuf.Type("ReloadConfig").add(new protobuf.Field("backoff", 1, "envoy.config.core.v3.BackoffStrategy")));
  }
  const plugin = root.lookupType("envoy.extensions.wasm.v3.PluginConfig");
  if (!plugin.fields.failure_policy) plugin.add(new protobuf.Field("failure_policy", 7, "FailurePolicy"));
  if (!plugin.fields.reload_config) plugin.add(new protobuf.Field("reload_config", 8, "ReloadConfig"));
}

/**
 * How @grpc/proto-loader decodes discovery messages for the server and for test/bench clients:
 * field names as in the protos (snake_case, like Envoy YAML), enums by name, 64-bit ints as
 * strings, no default-filled fields (so "unset" stays distinguishable).
 */
export function discoveryLoaderOptions() {
  return { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: protoIncludeDirs() };
}
