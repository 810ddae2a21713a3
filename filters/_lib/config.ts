// Shared helper for filters: read the plugin configuration Envoy passes to onConfigure.
//
// New filters do not need it: the runtime filters compile against (the corrected 0.1.8 in
// vendor/proxy-runtime-0.1.8-wasmxds/) reads the configuration itself, and
// `this.root_context.getConfiguration()` returns it (or "" when none is set). This helper
// dates from the published 0.1.8, whose onConfigure misread the configuration (and trapped
// without one), and stays for filters that override onConfigure and call it; it reads the
// same bytes the runtime does.
//
// Folders under filters/ whose name starts with "_" are libraries, not filters: the
// watcher rebuilds every filter when something in here changes.

import { proxy_get_buffer_bytes } from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

// proxy-wasm ABI 0.2.x BufferType.PluginConfiguration.
const PLUGIN_CONFIGURATION_BUFFER: i32 = 7;
const WASM_RESULT_OK: u32 = 0;

/**
 * Returns the plugin configuration as a string ("" when none is set or the host
 * refuses). Call it from RootContext.onConfigure with that call's size argument.
 */
export function readPluginConfiguration(configurationSize: u32): string {
  if (configurationSize == 0) return "";
  // Two u32 out-parameters for the host: the pointer to the bytes, then their length.
  const out = new ArrayBuffer(8);
  const outPtr = changetype<usize>(out);
  const result = proxy_get_buffer_bytes(
    PLUGIN_CONFIGURATION_BUFFER, 0, configurationSize, outPtr, outPtr + 4,
  );
  if (result != WASM_RESULT_OK) return "";
  const dataPtr = load<u32>(outPtr) as usize;
  const dataSize = load<u32>(outPtr + 4) as usize;
  if (dataPtr == 0) return "";
  // The host got that memory from our exported malloc, which hands out one reference
  // to it: decode straight from the pointer, then give that reference back.
  const text = String.UTF8.decodeUnsafe(dataPtr, dataSize);
  free(dataPtr);
  return text;
}
