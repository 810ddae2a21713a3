import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BASE_CAPABILITIES, CAPABILITY_GROUPS, CAPABILITY_GROUP_NAMES, allowedCapabilities, capabilityOfImport,
  defaultCapabilities, groupOf, moduleCapabilities, parseCapabilityList,
} from "../../../controlplane/compile/capabilities.ts";
import { hostFunctions } from "../../../controlplane/compile/host-functions.ts";
import { wasmModule } from "./wasm-fixture.ts";

/** What filters/add-header (proxy-runtime 0.1.8, --use abort=abort_proc_exit) imports, measured. */
const ADD_HEADER_IMPORTS = [
  ["env", "proxy_log"], ["wasi_unstable", "proc_exit"], ["env", "proxy_get_buffer_bytes"],
  ["env", "proxy_get_property"], ["env", "proxy_set_effective_context"], ["env", "proxy_add_header_map_value"],
] as const;
/** ... and its function exports (proxy-runtime exports every callback). */
const PROXY_RUNTIME_EXPORTS = [
  "__alloc", "__retain", "__release", "__collect", "malloc", "free", "proxy_abi_version_0_2_0",
  "proxy_on_vm_start", "proxy_validate_configuration", "proxy_on_configure", "proxy_on_tick",
  "proxy_on_foreign_function", "proxy_on_queue_ready", "proxy_on_context_create",
  "proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers",
  "proxy_on_request_metadata", "proxy_on_response_headers", "proxy_on_response_body",
  "proxy_on_response_trailers", "proxy_on_response_metadata", "proxy_on_http_call_response",
  "proxy_on_grpc_receive_initial_metadata", "proxy_on_grpc_trailing_metadata", "proxy_on_grpc_receive",
  "proxy_on_grpc_close", "proxy_on_done", "proxy_on_log", "proxy_on_delete",
];

/** Capability names Envoy checks for host functions: proxy_* under env, bare WASI names. */
function restrictedHostNames(): Set<string> {
  const names = new Set<string>();
  for (const abi of ["0.2.0", "0.2.1"] as const) {
    for (const full of hostFunctions(abi)) {
      const [module, name] = full.split(".") as [string, string];
      const cap = capabilityOfImport(module, name);
      if (cap !== undefined) names.add(cap);
    }
  }
  return names;
}

describe("capability groups", () => {
  test("every name in the base set and the groups is one Envoy checks (host function or callback)", () => {
    const host = restrictedHostNames();
    for (const name of [...BASE_CAPABILITIES, ...Object.values(CAPABILITY_GROUPS).flatMap((g) => g.functions)]) {
      assert.ok(host.has(name) || /^proxy_on_/.test(name), `${name} is a host function or a module callback`);
    }
  });

  test("every restricted host function of ABI 0.2.x is in the base set or exactly one group", () => {
    for (const name of restrictedHostNames()) {
      const owners = [BASE_CAPABILITIES.includes(name) ? "base" : undefined, ...CAPABILITY_GROUP_NAMES.filter((g) => CAPABILITY_GROUPS[g]!.functions.includes(name))].filter(Boolean);
      assert.equal(owners.length, 1, `${name}: ${owners.join(", ") || "no group"}`);
    }
  });

  test("the base set covers what a proxy-runtime filter imports (add-header), and nothing that reaches out", () => {
    for (const [module, name] of ADD_HEADER_IMPORTS) assert.ok(BASE_CAPABILITIES.includes(capabilityOfImport(module, name)!), `${module}.${name}`);
    for (const reaching of ["proxy_http_call", "proxy_grpc_call", "proxy_set_shared_data", "proxy_define_metric", "proxy_set_property", "fd_write", "environ_get", "random_get"]) {
      assert.ok(!BASE_CAPABILITIES.includes(reaching), reaching);
    }
  });

  test("groupOf names the granting group", () => {
    assert.equal(groupOf("proxy_http_call"), "http_call");
    assert.equal(groupOf("proxy_log"), "base");
    assert.equal(groupOf("fd_write"), "wasi_fs");
    assert.equal(groupOf("clock_time_get"), "wasi_clock_random");
    assert.equal(groupOf("no_such"), undefined);
  });
});

describe("allowedCapabilities", () => {
  test("base + declared groups + exported callbacks, sorted, never empty", () => {
    const allowed = allowedCapabilities(["http_call"], ["malloc", "proxy_on_request_headers", "proxy_abi_version_0_2_0", "proxy_on_unknown_thing"]);
    assert.deepEqual(allowed, [...new Set([...BASE_CAPABILITIES, "proxy_http_call", "proxy_on_http_call_response", "proxy_on_request_headers"])].sort());
    assert.ok(!allowed.includes("malloc"), "malloc is not capability-checked");
    assert.ok(!allowed.includes("proxy_on_unknown_thing"), "only callbacks Envoy looks up");
    assert.ok(allowedCapabilities([], []).length > 0);
  });

  test("every callback a proxy-runtime module exports is granted (else Envoy silently never calls it)", () => {
    const allowed = new Set(allowedCapabilities([], PROXY_RUNTIME_EXPORTS));
    for (const cb of ["proxy_on_vm_start", "proxy_on_configure", "proxy_validate_configuration", "proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_done", "proxy_on_log", "proxy_on_delete"]) {
      assert.ok(allowed.has(cb), cb);
    }
    // proxy-runtime 0.1.8 misnames this one; Envoy never looks it up, so it is not granted.
    assert.ok(!allowed.has("proxy_on_grpc_trailing_metadata"));
  });

  test("unknown groups throw, naming the known ones", () => {
    assert.throws(() => allowedCapabilities(["network"], []), /unknown capability group "network" \(known: http_call, grpc/);
  });

  test("defaultCapabilities: base and every callback", () => {
    const d = defaultCapabilities();
    for (const name of BASE_CAPABILITIES) assert.ok(d.includes(name));
    assert.ok(d.includes("proxy_on_request_headers") && d.includes("proxy_on_http_call_response"));
    assert.ok(!d.includes("proxy_http_call"));
  });
});

describe("moduleCapabilities", () => {
  const probe = wasmModule({
    imports: [
      { module: "env", name: "proxy_log" },
      { module: "env", name: "proxy_http_call" },
      { module: "wasi_snapshot_preview1", name: "fd_write" },
      { module: "env", name: "pthread_equal" },
    ],
    exports: ["proxy_abi_version_0_2_0", "malloc", "proxy_on_request_headers", "proxy_on_http_call_response"],
  });

  test("reports imports Envoy will deny, with the group that would grant them", () => {
    const caps = moduleCapabilities(probe, []);
    assert.deepEqual(caps.declared, []);
    assert.deepEqual(caps.undeclaredImports, [
      { import: "env.proxy_http_call", group: "http_call" },
      { import: "wasi_snapshot_preview1.fd_write", group: "wasi_fs" },
    ]);
    assert.ok(caps.granted.includes("proxy_on_http_call_response"), "exported callback granted");
    assert.ok(!caps.granted.includes("proxy_http_call"));
  });

  test("declaring the groups grants them and clears the warning", () => {
    const caps = moduleCapabilities(probe, ["wasi_fs", "http_call", "http_call"]);
    assert.deepEqual(caps.declared, ["http_call", "wasi_fs"]);
    assert.deepEqual(caps.undeclaredImports, []);
    assert.ok(caps.granted.includes("proxy_http_call") && caps.granted.includes("fd_write"));
  });
});

describe("parseCapabilityList", () => {
  test("comma-separated, trimmed, de-duplicated, sorted", () => {
    assert.deepEqual(parseCapabilityList(" metrics,http_call ,metrics"), { ok: true, groups: ["http_call", "metrics"] });
    assert.deepEqual(parseCapabilityList(""), { ok: true, groups: [] });
  });
  test("unknown names are an error listing the allowed ones", () => {
    const r = parseCapabilityList("http_call,sockets");
    assert.equal(r.ok, false);
    assert.match((r as { error: string }).error, /unknown capability "sockets" \(allowed: http_call, grpc, /);
  });
});
