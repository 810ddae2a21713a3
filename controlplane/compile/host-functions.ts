// The host functions Envoy 1.40 links into a Wasm module, per proxy-wasm ABI version.
//
// Source: proxy-wasm-cpp-host (the host library Envoy embeds), include/proxy-wasm/exports.h
// macros FOR_ALL_HOST_FUNCTIONS, FOR_ALL_HOST_FUNCTIONS_ABI_SPECIFIC and
// FOR_ALL_WASI_FUNCTIONS, and src/wasm.cc WasmBase::registerCallbacks() (which functions are
// registered for which ABI), at main as of 2026-07 (the WASI list is the one extended by
// proxy-wasm-cpp-host#533, 2026-04). Cross-checked against the Envoy 1.40.0 release binary
// (`envoy --version`: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0): its strings hold one
// "Attempted call to restricted ... capability: <name>" stub message for exactly these
// proxy_* and WASI names, plus "pthread_equal" and "emscripten_notify_memory_growth".
//
// A module importing anything else fails to link in Envoy ("missing import"), which with
// remote code surfaces only as a filter with no VM: hence validating before announcing.

export type AbiVersion = "0.2.0" | "0.2.1";

/** `env.proxy_*` functions registered for every ABI version. */
const PROXY_COMMON = [
  "log", "get_status", "set_property", "get_property", "send_local_response",
  "get_shared_data", "set_shared_data", "register_shared_queue", "resolve_shared_queue",
  "dequeue_shared_queue", "enqueue_shared_queue", "get_header_map_value",
  "add_header_map_value", "replace_header_map_value", "remove_header_map_value",
  "get_header_map_pairs", "set_header_map_pairs", "get_header_map_size",
  "get_buffer_status", "get_buffer_bytes", "set_buffer_bytes",
  "http_call", "grpc_call", "grpc_stream", "grpc_close", "grpc_cancel", "grpc_send",
  "set_tick_period_milliseconds", "get_current_time_nanoseconds",
  "define_metric", "increment_metric", "record_metric", "get_metric",
  "set_effective_context", "done", "call_foreign_function",
].map((name) => `proxy_${name}`);

/** `env.proxy_*` functions registered only for some ABI versions. */
const PROXY_BY_ABI: Record<AbiVersion | "0.1.0", string[]> = {
  "0.1.0": ["get_configuration", "continue_request", "continue_response", "clear_route_cache"]
    .map((name) => `proxy_${name}`),
  "0.2.0": ["continue_stream", "close_stream"].map((name) => `proxy_${name}`),
  "0.2.1": ["continue_stream", "close_stream", "get_log_level"].map((name) => `proxy_${name}`),
};

/** Other `env` functions registered unconditionally (for Emscripten-built modules). */
const ENV_OTHER = ["pthread_equal", "emscripten_notify_memory_growth"];

/** WASI preview1 subset; registered under both module names below. */
const WASI = [
  "fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
  "fd_fdstat_set_rights", "environ_get", "environ_sizes_get", "args_get", "args_sizes_get",
  "clock_time_get", "clock_res_get", "fd_advise", "fd_allocate", "fd_datasync",
  "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_pwrite", "fd_readdir",
  "fd_renumber", "fd_sync", "fd_tell", "path_create_directory", "path_filestat_set_times",
  "path_link", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
  "path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
  "random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open",
  "fd_prestat_get", "fd_prestat_dir_name", "path_filestat_get", "fd_filestat_get",
];
export const WASI_MODULES = ["wasi_unstable", "wasi_snapshot_preview1"] as const;

/** Every `module.name` import Envoy satisfies for a module declaring `abi`. */
export function hostFunctions(abi: AbiVersion): ReadonlySet<string> {
  const names = new Set<string>();
  for (const fn of [...PROXY_COMMON, ...PROXY_BY_ABI[abi], ...ENV_OTHER]) names.add(`env.${fn}`);
  for (const module of WASI_MODULES) for (const fn of WASI) names.add(`${module}.${fn}`);
  return names;
}

/** ABI versions (other than `abi`) that do provide `env.<name>`, for error messages. */
export function abisProviding(name: string): string[] {
  return Object.entries(PROXY_BY_ABI)
    .filter(([, fns]) => fns.includes(name))
    .map(([abi]) => abi);
}
