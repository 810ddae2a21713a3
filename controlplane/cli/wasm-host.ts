// A minimal proxy-wasm (ABI 0.2.x) host in Node: just enough of Envoy to run one HTTP stream
// through a filter module (root context, configuration, request and response headers, local
// replies, logs), so `npm run filters -- test <name>` can check behaviour without an Envoy.
// Host calls it does not model answer Unimplemented and are listed in the outcome.

export type HeaderList = [string, string][];

export interface StreamInput {
  rootId: string;
  configuration: string;
  request: HeaderList;
  response: HeaderList;
}

export interface StreamOutcome {
  request: HeaderList;
  response: HeaderList;
  /** proxy_send_local_response, if the filter answered by itself. */
  localReply?: { status: number; body: string };
  logs: string[];
  unsupported: string[];
}

const OK = 0;
const NOT_FOUND = 1;
const UNIMPLEMENTED = 12;
const REQUEST_HEADERS = 0;
const RESPONSE_HEADERS = 2;
const VM_CONFIGURATION = 6;
const PLUGIN_CONFIGURATION = 7;
const LEVELS = ["trace", "debug", "info", "warn", "error", "critical"];
const ROOT = 1;
const STREAM = 2;

class ProcExit extends Error {}
/** The module answered, but not as Envoy needs (a `false`, a missing export): no "trapped" prefix. */
class Refused extends Error {}

function serialize(headers: HeaderList): Uint8Array {
  const enc = new TextEncoder();
  const pairs = headers.map(([k, v]) => [enc.encode(k), enc.encode(v)] as const);
  const out = new Uint8Array(4 + pairs.length * 8 + pairs.reduce((n, [k, v]) => n + k.length + v.length + 2, 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, pairs.length, true);
  let at = 4 + pairs.length * 8;
  pairs.forEach(([k, v], i) => {
    view.setUint32(4 + i * 8, k.length, true);
    view.setUint32(8 + i * 8, v.length, true);
    out.set(k, at);
    out.set(v, at + k.length + 1);
    at += k.length + v.length + 2;
  });
  return out;
}

function deserialize(bytes: Uint8Array): HeaderList {
  if (bytes.length < 4) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  const dec = new TextDecoder();
  const out: HeaderList = [];
  let at = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const kl = view.getUint32(4 + i * 8, true);
    const vl = view.getUint32(8 + i * 8, true);
    out.push([dec.decode(bytes.subarray(at, at + kl)), dec.decode(bytes.subarray(at + kl + 1, at + kl + 1 + vl))]);
    at += kl + vl + 2;
  }
  return out;
}

/** What a plugin start needs: the root id Envoy's PluginConfig names, and its configuration. */
export interface PluginInput {
  rootId: string;
  configuration: string;
}

/** A plugin that started: its log lines and the host calls this host does not model. */
export interface StartOutcome {
  logs: string[];
  unsupported: string[];
}

/**
 * Starts the plugin as Envoy does when it creates a Wasm plugin: WASI initialisation
 * (`_initialize`, then `main` if exported; else `_start`), the root context (proxy_on_context_create
 * with no parent), proxy_on_vm_start and proxy_on_configure. Throws, with the reason and the last
 * log lines, when any of them traps or returns false. An AssemblyScript (proxy-runtime) module
 * asked for a root id it never registered traps in proxy_on_context_create ("Missing root context
 * factory for root id"); the Rust SDK has one root context factory and ignores the root id.
 */
export async function startPlugin(wasm: Uint8Array, input: PluginInput): Promise<StartOutcome> {
  const vm = await instantiate(wasm, { ...input, request: [], response: [] });
  vm.guard(() => vm.start());
  return { logs: vm.outcome.logs, unsupported: vm.outcome.unsupported };
}

/** Runs one request/response through the module, as Envoy would call it. */
export async function runStream(wasm: Uint8Array, input: StreamInput): Promise<StreamOutcome> {
  const vm = await instantiate(wasm, input);
  const { call, map, outcome } = vm;
  vm.guard(() => {
    vm.start();
    // Like Envoy, skip a stream callback the module does not export (the control plane
    // unexports those a filter does not implement: compile/trim-exports.ts).
    const stream = (name: string, ...args: number[]): void => void (vm.has(name) && call(name, ...args));
    // A module with no HTTP callback at all is no HTTP filter: say so rather than pass it.
    const http = ["request_headers", "request_body", "request_trailers", "response_headers", "response_body", "response_trailers"];
    if (!http.some((cb) => vm.has(`proxy_on_${cb}`))) {
      throw new Refused("the module does not export proxy_on_request_headers (nor any HTTP callback)");
    }
    stream("proxy_on_context_create", STREAM, ROOT);
    stream("proxy_on_request_headers", STREAM, map(REQUEST_HEADERS).length, 1);
    if (!outcome.localReply) stream("proxy_on_response_headers", STREAM, map(RESPONSE_HEADERS).length, 1);
    stream("proxy_on_done", STREAM);
    stream("proxy_on_log", STREAM);
    stream("proxy_on_delete", STREAM);
  });
  outcome.request = map(REQUEST_HEADERS);
  outcome.response = map(RESPONSE_HEADERS);
  return outcome;
}

interface Instance {
  outcome: StreamOutcome;
  call(name: string, ...args: number[]): number;
  map(type: number): HeaderList;
  /** WASI init, root context, onStart, onConfigure. */
  start(): void;
  /** Runs `fn`, turning a trap or exit into an Error with the last log lines. */
  guard(fn: () => void): void;
  /** The module exports function `name`. */
  has(name: string): boolean;
}

async function instantiate(wasm: Uint8Array, input: StreamInput): Promise<Instance> {
  const maps = new Map<number, HeaderList>([[REQUEST_HEADERS, input.request.map(([k, v]) => [k.toLowerCase(), v])], [RESPONSE_HEADERS, input.response.map(([k, v]) => [k.toLowerCase(), v])]]);
  const config = new TextEncoder().encode(input.configuration);
  const outcome: StreamOutcome = { request: [], response: [], logs: [], unsupported: [] };
  let exports: WebAssembly.Exports = {};
  const memory = () => (exports.memory as WebAssembly.Memory).buffer;
  const str = (ptr: number, len: number) => new TextDecoder().decode(new Uint8Array(memory(), ptr, len));
  const map = (type: number): HeaderList => maps.get(type) ?? maps.set(type, []).get(type)!;
  /** Hands bytes to the module the way Envoy does: in memory from its own malloc. */
  const give = (data: Uint8Array, ptrOut: number, sizeOut: number): number => {
    let ptr = 0;
    if (data.length > 0) {
      const malloc = (exports.malloc ?? exports.proxy_on_memory_allocate) as (n: number) => number;
      ptr = malloc(data.length);
      new Uint8Array(memory()).set(data, ptr);
    }
    const view = new DataView(memory());
    view.setUint32(ptrOut, ptr, true);
    view.setUint32(sizeOut, data.length, true);
    return OK;
  };

  const host: Record<string, (...args: number[]) => number | void> = {
    proxy_log: (level, ptr, len) => void outcome.logs.push(`[${LEVELS[level] ?? level}] ${str(ptr, len)}`),
    proc_exit: (code) => {
      throw new ProcExit(`the module exited (proc_exit ${code})`);
    },
    proxy_set_effective_context: () => OK,
    proxy_get_property: (ptr, len, ptrOut, sizeOut) => {
      const key = str(ptr, len).split("\0").join(".");
      const values: Record<string, string> = { plugin_root_id: input.rootId, plugin_name: input.rootId };
      return key in values ? give(new TextEncoder().encode(values[key]), ptrOut, sizeOut) : NOT_FOUND;
    },
    proxy_get_buffer_bytes: (type, start, max, ptrOut, sizeOut) => {
      // Unsigned, as Envoy reads them: the Rust SDK asks for max = usize::MAX, which arrives as -1.
      if (type === PLUGIN_CONFIGURATION) return give(config.subarray(start >>> 0, (start >>> 0) + (max >>> 0)), ptrOut, sizeOut);
      if (type === VM_CONFIGURATION) return give(new Uint8Array(0), ptrOut, sizeOut);
      return NOT_FOUND;
    },
    proxy_get_header_map_value: (type, kp, kl, ptrOut, sizeOut) => {
      const key = str(kp, kl).toLowerCase();
      const found = map(type).find(([k]) => k === key);
      return found ? give(new TextEncoder().encode(found[1]), ptrOut, sizeOut) : NOT_FOUND;
    },
    proxy_add_header_map_value: (type, kp, kl, vp, vl) => {
      map(type).push([str(kp, kl).toLowerCase(), str(vp, vl)]);
      return OK;
    },
    proxy_replace_header_map_value: (type, kp, kl, vp, vl) => {
      const key = str(kp, kl).toLowerCase();
      maps.set(type, [...map(type).filter(([k]) => k !== key), [key, str(vp, vl)]]);
      return OK;
    },
    proxy_remove_header_map_value: (type, kp, kl) => {
      const key = str(kp, kl).toLowerCase();
      maps.set(type, map(type).filter(([k]) => k !== key));
      return OK;
    },
    proxy_get_header_map_pairs: (type, ptrOut, sizeOut) => give(serialize(map(type)), ptrOut, sizeOut),
    proxy_set_header_map_pairs: (type, ptr, len) => {
      maps.set(type, deserialize(new Uint8Array(memory(), ptr, len).slice()));
      return OK;
    },
    proxy_get_header_map_size: (type, sizeOut) => {
      new DataView(memory()).setUint32(sizeOut, serialize(map(type)).length, true);
      return OK;
    },
    proxy_send_local_response: (status, _dp, _dl, bp, bl) => {
      outcome.localReply = { status, body: str(bp, bl) };
      return OK;
    },
    proxy_get_current_time_nanoseconds: (ptrOut) => {
      new DataView(memory()).setBigUint64(ptrOut, BigInt(Date.now()) * 1_000_000n, true);
      return OK;
    },
    proxy_set_tick_period_milliseconds: () => OK,
    proxy_continue_stream: () => OK,
    proxy_clear_route_cache: () => OK,
    // WASI, as far as SDK start-up code uses it (Rust's std, TinyGo): no environment, no
    // arguments, a clock, randomness, and stdout/stderr into the log.
    fd_write: (fd, iovs, count, writtenOut) => {
      const view = new DataView(memory());
      let written = 0;
      for (let i = 0; i < count; i++) {
        const len = view.getUint32(iovs + i * 8 + 4, true);
        outcome.logs.push(`[fd ${fd}] ${str(view.getUint32(iovs + i * 8, true), len).trimEnd()}`);
        written += len;
      }
      view.setUint32(writtenOut, written, true);
      return OK;
    },
    environ_sizes_get: (countOut, sizeOut) => zeros(countOut, sizeOut),
    environ_get: () => OK,
    args_sizes_get: (countOut, sizeOut) => zeros(countOut, sizeOut),
    args_get: () => OK,
    // (id: i32, precision: i64, out: i32): the i64 arrives as a BigInt.
    clock_time_get: (_id, _precision, timeOut) => {
      new DataView(memory()).setBigUint64(timeOut, BigInt(Date.now()) * 1_000_000n, true);
      return OK;
    },
    random_get: (ptr, len) => {
      // getRandomValues fills at most 64 KiB per call.
      for (let at = 0; at < len; at += 65536) crypto.getRandomValues(new Uint8Array(memory(), ptr + at, Math.min(65536, len - at)));
      return OK;
    },
    sched_yield: () => OK,
  };
  const zeros = (...ptrs: number[]): number => {
    for (const p of ptrs) new DataView(memory()).setUint32(p, 0, true);
    return OK;
  };

  const module = await WebAssembly.compile(wasm as Uint8Array<ArrayBuffer>);
  const imports: Record<string, Record<string, (...args: number[]) => number | void>> = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== "function") continue;
    const fn = host[imp.name] ?? (() => {
      outcome.unsupported.push(`${imp.module}.${imp.name}`);
      return UNIMPLEMENTED;
    });
    (imports[imp.module] ??= {})[imp.name] = fn;
  }

  // The callback running when a trap happens: a trap message alone ("unreachable") does not say.
  let phase = "the module's start function (instantiation)";
  const call = (name: string, ...args: number[]): number => {
    const fn = exports[name];
    if (typeof fn !== "function") throw new Refused(`the module does not export ${name}`);
    phase = name;
    return Number((fn as (...a: number[]) => unknown)(...args) ?? 0);
  };
  const has = (name: string) => typeof exports[name] === "function";
  const guard = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const why = err instanceof Refused ? message : `${phase} trapped: ${message}`;
      const last = outcome.logs.slice(-3).join("\n  ");
      throw new Error(`${why}${last ? `\n  last log lines:\n  ${last}` : ""}`);
    }
  };
  try {
    // Instantiation runs the module's start function (AssemblyScript's top level): it may trap.
    exports = (await WebAssembly.instantiate(module, imports as WebAssembly.Imports)).exports;
  } catch (err) {
    guard(() => {
      throw err;
    });
  }
  const start = (): void => {
    if (has("_initialize")) {
      call("_initialize");
      if (has("main")) call("main", 0, 0);
    } else if (has("_start")) {
      call("_start");
    }
    call("proxy_on_context_create", ROOT, 0);
    if (call("proxy_on_vm_start", ROOT, 0) === 0) throw new Refused("onStart (proxy_on_vm_start) returned false");
    if (call("proxy_on_configure", ROOT, config.length) === 0) {
      throw new Refused(`onConfigure (proxy_on_configure) returned false: it rejected the configuration ${JSON.stringify(input.configuration)}`);
    }
  };
  return { outcome, call, map, guard, start, has };
}
