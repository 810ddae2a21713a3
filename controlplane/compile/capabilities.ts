// What a filter may call in Envoy: the allow-list sent as the Wasm plugin's
// `capability_restriction_config.allowed_capabilities`.
//
// How Envoy 1.40 enforces it (proxy-wasm-cpp-host, src/wasm.cc and include/proxy-wasm/wasm.h,
// exports.h; read at the mirror's HEAD, 2026-07):
// - WasmBase::capabilityAllowed(name) is true when the map is EMPTY or holds `name`. An empty
//   map therefore allows everything: the control plane always sends a non-empty one.
// - registerCallbacks(): every proxy-wasm host function (`proxy_<fn>`) and every WASI function
//   (checked by its bare name, e.g. `fd_write`, `proc_exit`) that is not allowed is linked to a
//   stub that logs "Attempted call to restricted proxy-wasm capability: proxy_<fn>" (or "...
//   restricted WASI capability: <fn>") and returns WasmResult::InternalFailure (10); WASI stubs
//   return 76 (__WASI_ENOTCAPABLE). The module still loads: denial happens at call time.
// - getFunctions(): the module's exported callbacks (`proxy_on_*`, `proxy_validate_configuration`)
//   are looked up only if allowed; one left out is silently never called (a filter whose
//   proxy_on_request_headers is not allowed just passes requests through). So every callback
//   the module exports is granted. `malloc`/`proxy_on_memory_allocate`, `_initialize`, `_start`
//   and the ABI version marker are not capability-checked.
// - The set is fixed when a VM is created, and proxy-wasm caches base and per-worker VMs by
//   (vm_id, vm configuration, code) only, so a change of capabilities alone may meet a cached
//   VM with the old set while that VM is still referenced. The resource builder derives the
//   vm_id from the granted set (resources.ts) so such a change always makes new VMs.
// - Envoy 1.40 logs capability_restriction_config as a deprecated field (a warning on every
//   config that carries it) but enforces it (test/e2e/capabilities.test.ts).

/** A named group of host functions a filter can declare in filter.json `capabilities`. */
export interface CapabilityGroup {
  description: string;
  /** Capability names as Envoy checks them (proxy_* names, bare WASI names, callbacks). */
  functions: readonly string[];
}

const proxy = (...names: string[]): string[] => names.map((n) => `proxy_${n}`);

/**
 * Granted to every filter: what an HTTP filter written with @solo-io/proxy-runtime 0.1.8 needs
 * to run at all. Measured on filters/add-header (imports env.proxy_log, proxy_get_buffer_bytes,
 * proxy_get_property, proxy_set_effective_context, proxy_add_header_map_value and
 * wasi_unstable.proc_exit), and read from the runtime: it reads the `plugin_root_id` property
 * on every root context creation (so proxy_get_property is base, not a group), switches the
 * effective context for callbacks, and its abort (`--use abort=abort_proc_exit`) logs and calls
 * proc_exit. The rest is the request/response surface any header or body filter uses.
 */
export const BASE_CAPABILITIES: readonly string[] = [
  ...proxy(
    "log", "get_log_level", "get_status", "get_property", "set_effective_context", "done",
    "get_header_map_value", "add_header_map_value", "replace_header_map_value",
    "remove_header_map_value", "get_header_map_pairs", "set_header_map_pairs", "get_header_map_size",
    "get_buffer_status", "get_buffer_bytes", "set_buffer_bytes",
    "send_local_response", "continue_stream", "close_stream",
    "get_current_time_nanoseconds", "set_tick_period_milliseconds",
  ),
  "proc_exit",
];

// Rust filters (proxy-wasm crate 0.2.5, wasm32-wasip1, measured on filters/hello-rust) are
// classified by the same tables: the SDK imports every host call it wraps whether the filter
// uses it or not (http_call, grpc_*, shared data and queues, set_property, foreign functions),
// and Rust's std adds wasi_snapshot_preview1 environ_get, environ_sizes_get, fd_write and
// proc_exit. A header filter calls none of them but proxy_log and the header functions (Envoy
// logs no denied call), so it needs only the base set; the others show as undeclared imports
// with their groups. What a Rust author declares: docs/rust-filters.md.

/** The groups a manifest may declare; anything else is a manifest error. */
export const CAPABILITY_GROUPS: Readonly<Record<string, CapabilityGroup>> = {
  http_call: {
    description: "HTTP calls to an Envoy cluster (proxy_http_call) and their response callback",
    functions: [...proxy("http_call", "on_http_call_response")],
  },
  grpc: {
    description: "gRPC calls and streams to an Envoy cluster, with their callbacks",
    functions: [
      ...proxy("grpc_call", "grpc_stream", "grpc_send", "grpc_cancel", "grpc_close"),
      ...proxy("on_grpc_receive_initial_metadata", "on_grpc_receive", "on_grpc_receive_trailing_metadata", "on_grpc_close"),
    ],
  },
  properties: {
    description: "writing properties / filter state (proxy_set_property); reading is in the base set",
    functions: proxy("set_property"),
  },
  shared_data: {
    description: "the VM-wide key/value store shared across workers (proxy_get/set_shared_data)",
    functions: proxy("get_shared_data", "set_shared_data"),
  },
  shared_queue: {
    description: "shared queues between VMs (register/resolve/enqueue/dequeue) and proxy_on_queue_ready",
    functions: proxy("register_shared_queue", "resolve_shared_queue", "enqueue_shared_queue", "dequeue_shared_queue", "on_queue_ready"),
  },
  metrics: {
    description: "defining and updating Envoy stats (counters, gauges, histograms)",
    functions: proxy("define_metric", "increment_metric", "record_metric", "get_metric"),
  },
  foreign_function: {
    description: "Envoy's foreign functions (proxy_call_foreign_function) and proxy_on_foreign_function",
    functions: proxy("call_foreign_function", "on_foreign_function"),
  },
  wasi_env: {
    description: "WASI environment variables and arguments (environ_*, args_*)",
    functions: ["environ_get", "environ_sizes_get", "args_get", "args_sizes_get"],
  },
  wasi_fs: {
    description: "WASI file descriptors, paths and sockets (fd_*, path_*, sock_*; Envoy maps stdout/stderr writes to its log)",
    functions: [
      "fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
      "fd_fdstat_set_rights", "fd_advise", "fd_allocate", "fd_datasync", "fd_filestat_get",
      "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_pwrite", "fd_readdir",
      "fd_renumber", "fd_sync", "fd_tell", "fd_prestat_get", "fd_prestat_dir_name",
      "path_open", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
      "path_link", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
      "path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
    ],
  },
  wasi_clock_random: {
    description: "WASI clocks, randomness and scheduling (clock_*, random_get, sched_yield, poll_oneoff)",
    functions: ["clock_time_get", "clock_res_get", "random_get", "sched_yield", "poll_oneoff"],
  },
};

export const CAPABILITY_GROUP_NAMES: readonly string[] = Object.keys(CAPABILITY_GROUPS);

export function isCapabilityGroup(name: string): boolean {
  return Object.hasOwn(CAPABILITY_GROUPS, name);
}

/**
 * Callbacks Envoy looks up in a module only when allowed (WasmBase::getFunctions:
 * FOR_ALL_MODULE_FUNCTIONS plus the ABI-specific header callbacks and on_foreign_function).
 */
const MODULE_CALLBACKS: ReadonlySet<string> = new Set(proxy(
  "validate_configuration", "on_vm_start", "on_configure", "on_tick", "on_context_create",
  "on_new_connection", "on_downstream_data", "on_upstream_data", "on_downstream_connection_close",
  "on_upstream_connection_close", "on_request_headers", "on_request_body", "on_request_trailers",
  "on_request_metadata", "on_response_headers", "on_response_body", "on_response_trailers",
  "on_response_metadata", "on_http_call_response", "on_grpc_receive", "on_grpc_close",
  "on_grpc_receive_initial_metadata", "on_grpc_receive_trailing_metadata", "on_queue_ready",
  "on_done", "on_log", "on_delete", "on_foreign_function",
));

/** The capability name Envoy checks for an import, or undefined when the import is not restricted. */
export function capabilityOfImport(module: string, name: string): string | undefined {
  if (module === "env") return name.startsWith("proxy_") ? name : undefined;
  if (module === "wasi_unstable" || module === "wasi_snapshot_preview1") return name;
  return undefined;
}

/** The group that grants `capability`, if any ("base" for the base set). */
export function groupOf(capability: string): string | undefined {
  if (BASE_CAPABILITIES.includes(capability)) return "base";
  return CAPABILITY_GROUP_NAMES.find((g) => CAPABILITY_GROUPS[g]!.functions.includes(capability));
}

/**
 * The allow-list for Envoy: the base set, the declared groups, and every callback the module
 * exports. Sorted and de-duplicated, so equal inputs give byte-identical resources.
 */
export function allowedCapabilities(declared: readonly string[], moduleExports: readonly string[]): string[] {
  const out = new Set<string>(BASE_CAPABILITIES);
  for (const group of declared) {
    const g = CAPABILITY_GROUPS[group];
    if (!g) throw new Error(`unknown capability group "${group}" (known: ${CAPABILITY_GROUP_NAMES.join(", ")})`);
    for (const fn of g.functions) out.add(fn);
  }
  for (const name of moduleExports) if (MODULE_CALLBACKS.has(name)) out.add(name);
  return [...out].sort();
}

/** An import Envoy will replace by a failing stub because no declared group grants it. */
export interface UndeclaredImport {
  /** As the module imports it, e.g. "env.proxy_http_call". */
  import: string;
  /** The group that would grant it; absent when none does. */
  group?: string;
}

/** What a module is granted and what it reaches for without a grant (shown by the admin API). */
export interface ModuleCapabilities {
  /** Groups from filter.json (or the upload's query), sorted. */
  declared: string[];
  /** The exact `allowed_capabilities` keys sent to Envoy. */
  granted: string[];
  /** Not a build error: Envoy denies these at call time. A warning for the filter's author. */
  undeclaredImports: UndeclaredImport[];
}

/** Capabilities of a module that has passed validateModule (so it compiles). */
export function moduleCapabilities(wasm: Uint8Array, declared: readonly string[]): ModuleCapabilities {
  const source: Uint8Array<ArrayBuffer> =
    wasm.buffer instanceof ArrayBuffer ? (wasm as Uint8Array<ArrayBuffer>) : new Uint8Array(wasm);
  const module = new WebAssembly.Module(source);
  const exports = WebAssembly.Module.exports(module).filter((e) => e.kind === "function").map((e) => e.name);
  const imports = WebAssembly.Module.imports(module).filter((i) => i.kind === "function");
  const sortedDeclared = [...new Set(declared)].sort();
  const granted = allowedCapabilities(sortedDeclared, exports);
  const grantedSet = new Set(granted);
  const undeclaredImports: UndeclaredImport[] = [];
  for (const imp of imports) {
    const capability = capabilityOfImport(imp.module, imp.name);
    if (capability === undefined || grantedSet.has(capability)) continue;
    const group = groupOf(capability);
    undeclaredImports.push({ import: `${imp.module}.${imp.name}`, ...(group ? { group } : {}) });
  }
  return { declared: sortedDeclared, granted, undeclaredImports };
}

/** Parses a comma-separated list of group names (upload query); errors name the bad ones. */
export function parseCapabilityList(text: string): { ok: true; groups: string[] } | { ok: false; error: string } {
  const groups = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknown = groups.filter((g) => !isCapabilityGroup(g));
  if (unknown.length > 0) {
    return { ok: false, error: `unknown capability ${unknown.map((u) => `"${u}"`).join(", ")} (allowed: ${CAPABILITY_GROUP_NAMES.join(", ")})` };
  }
  return { ok: true, groups: [...new Set(groups)].sort() };
}

/** For a module whose exports are unknown: the base set and every callback (never empty). */
export function defaultCapabilities(): string[] {
  return allowedCapabilities([], [...MODULE_CALLBACKS]);
}
