/**
 * Bad modules made from a good one (add-header as the control plane built it), byte for byte:
 * the cases a prebuilt upload or a compromised build could hand the control plane.
 */
import { randomBytes } from "node:crypto";

/** Replaces every occurrence of `from` with `to` (same length, so no offset moves). */
function renameBytes(bytes: Uint8Array, from: string, to: string): Uint8Array {
  if (from.length !== to.length) throw new Error(`renameBytes: ${from} and ${to} differ in length`);
  const out = Buffer.from(bytes);
  const needle = Buffer.from(from);
  let at = out.indexOf(needle);
  if (at < 0) throw new Error(`renameBytes: ${from} not found in the module`);
  while (at >= 0) {
    Buffer.from(to).copy(out, at);
    at = out.indexOf(needle, at + needle.length);
  }
  return new Uint8Array(out);
}

/** Not Wasm at all: the first half of the module (magic and version intact, sections cut). */
export function truncated(good: Uint8Array): Uint8Array {
  return good.slice(0, Math.floor(good.length / 2));
}

/** A valid module that exports no proxy_abi_version_* function (the name changed). */
export function wrongAbiExport(good: Uint8Array): Uint8Array {
  return renameBytes(good, "proxy_abi_version_0_2_0", "proxy_abi_version_9_9_9");
}

/** A valid module importing a host function Envoy does not have (env.proxy_log -> env.proxy_lag). */
export function unknownImport(good: Uint8Array): Uint8Array {
  return renameBytes(good, "proxy_log", "proxy_lag");
}

/**
 * The same code under a new sha256: a custom section (id 0) with random bytes appended.
 * Custom sections carry no semantics, so the module behaves exactly as `good` does.
 */
export function withNonce(good: Uint8Array): Uint8Array {
  const name = Buffer.from("isolation-nonce");
  const payload = Buffer.concat([Buffer.from([name.length]), name, randomBytes(16)]);
  // Section size as unsigned LEB128 (the payload is far below 128 bytes: one byte).
  if (payload.length >= 128) throw new Error("withNonce: payload too long for a one-byte size");
  return new Uint8Array(Buffer.concat([Buffer.from(good), Buffer.from([0, payload.length]), payload]));
}
