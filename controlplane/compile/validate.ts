// Checks that a built module will load in Envoy 1.40 before anyone announces it: Envoy
// reports a bad remote module only as a filter without a VM (503s or a silently skipped
// filter), never as a NACK, so the control plane has to catch these itself.

import { abisProviding, hostFunctions, type AbiVersion } from "./host-functions.ts";

export type ValidationResult =
  | { ok: true; abiVersion: AbiVersion; imports: string[] }
  | { ok: false; error: string };

// Envoy takes the first function export with one of these names, in export order
// (proxy-wasm-cpp-host BytecodeUtil::getAbiVersion); we do the same.
const ABI_EXPORTS: Record<string, AbiVersion | "0.1.0"> = {
  proxy_abi_version_0_1_0: "0.1.0",
  proxy_abi_version_0_2_0: "0.2.0",
  proxy_abi_version_0_2_1: "0.2.1",
};

// What a filter author most likely wrote when an AssemblyScript build imports these.
const HINTS: Record<string, string> = {
  "env.seed": "Math.random?",
  "env.trace": "trace()?",
  "env.abort": "build with --use abort=abort_proc_exit",
  "env.proxy_clear_route_cache": "clear_route_cache()?",
  "env.proxy_get_configuration": "proxy-runtime's ABI 0.1.0 configuration call?",
  "Date.now": "Date.now()? use the proxy_get_current_time_nanoseconds host call",
};

/** Default for CP_MAX_MODULE_BYTES: a module larger than this is never announced. */
export const DEFAULT_MAX_MODULE_BYTES = 8 * 1024 * 1024;

export interface ValidateOptions {
  /**
   * Largest module accepted (CP_MAX_MODULE_BYTES). Every Envoy downloads, compiles and keeps
   * each module in its process-wide code cache (24 h), once per distinct sha256.
   */
  maxBytes?: number;
}

export function validateModule(bytes: Uint8Array, opts: ValidateOptions = {}): ValidationResult {
  if (opts.maxBytes !== undefined && bytes.byteLength > opts.maxBytes) {
    return {
      ok: false,
      error: `module is ${formatBytes(bytes.byteLength)}, over the ${formatBytes(opts.maxBytes)} limit (CP_MAX_MODULE_BYTES)`,
    };
  }
  // WebAssembly.Module takes no views of shared memory: copy those (rare) into a plain buffer.
  const source: Uint8Array<ArrayBuffer> =
    bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(source);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `not a valid Wasm module: ${reason}` };
  }

  const exports = WebAssembly.Module.exports(module);
  const functionExports = new Set(exports.filter((e) => e.kind === "function").map((e) => e.name));
  const abiExport = exports.find((e) => e.kind === "function" && e.name in ABI_EXPORTS);
  if (!abiExport) {
    return {
      ok: false,
      error:
        "exports neither proxy_abi_version_0_2_0 nor proxy_abi_version_0_2_1 " +
        '(does the entry file start with `export * from "@solo-io/proxy-runtime/proxy";`?)',
    };
  }
  const abi = ABI_EXPORTS[abiExport.name];
  if (abi === undefined || abi === "0.1.0") {
    return { ok: false, error: "declares proxy-wasm ABI 0.1.0; only 0.2.0 and 0.2.1 are served" };
  }
  if (!functionExports.has("malloc") && !functionExports.has("proxy_on_memory_allocate")) {
    return {
      ok: false,
      error: "exports neither malloc nor proxy_on_memory_allocate, which Envoy needs to pass data in",
    };
  }

  const provided = hostFunctions(abi);
  const imports: string[] = [];
  const problems: string[] = [];
  for (const imp of WebAssembly.Module.imports(module)) {
    const name = `${imp.module}.${imp.name}`;
    imports.push(name);
    if (imp.kind !== "function") {
      problems.push(`imports ${imp.kind} ${name}, but Envoy provides only functions`);
    } else if (!provided.has(name)) {
      problems.push(`imports ${name}, which Envoy does not provide${why(imp.module, imp.name, abi)}`);
    }
  }
  if (problems.length > 0) return { ok: false, error: problems.join("; ") };
  return { ok: true, abiVersion: abi, imports };
}

function why(module: string, name: string, abi: AbiVersion): string {
  const reasons: string[] = [];
  if (module === "env") {
    const elsewhere = abisProviding(name);
    if (elsewhere.length > 0) {
      reasons.push(`only in proxy-wasm ABI ${elsewhere.join(", ")}, this module declares ${abi}`);
    }
  }
  const hint = HINTS[`${module}.${name}`];
  if (hint) reasons.push(hint);
  return reasons.length > 0 ? ` (${reasons.join("; ")})` : "";
}

/** "9437184 bytes (9.0 MiB)": exact for scripts, readable for people. */
export function formatBytes(n: number): string {
  const unit = n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes (${unit})`;
}
