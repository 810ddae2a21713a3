// The protobuf bytes of what crosses every xDS stream, written and read without protobufjs'
// object conversion. A change fans out to every stream: at 5,000 streams, protobufjs'
// fromObject + encode of each response (and toObject of each ACK) was a fifth of the server's
// CPU per change. Responses carry resources that are already encoded (snapshot.ts), so writing
// one is a few length prefixes around bytes we hold; a request is decoded into protobufjs'
// message object, whose fields read like the proto-loader objects the sessions were written for.
import type protobuf from "protobufjs";
import type { AnyMessage } from "./codec.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import { envoyRoot } from "./protos.ts";

export function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** Writes `n` (a non-negative 32-bit length) at `off`; returns the offset after it. */
export function writeVarint(buf: Uint8Array, off: number, n: number): number {
  while (n > 0x7f) {
    buf[off++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[off++] = n;
  return off;
}

const SLAB_BYTES = 64 * 1024;
let slab = Buffer.allocUnsafeSlow(0);
let slabUsed = 0;

/**
 * Uninitialised bytes for a message that lives only until grpc-js has framed it (it copies):
 * cut from a shared 64 KiB slab. Node's own pool is 8 KiB, so at a few KiB per response a
 * fan-out allocated a new ArrayBuffer every other stream, and their external-memory accounting
 * made the GC run more often. The bytes stay valid (a slab is never reused); one kept (a queued
 * response of a peer that does not read) keeps its slab alive.
 */
export function scratch(size: number): Buffer {
  if (size > SLAB_BYTES / 8) return Buffer.allocUnsafeSlow(size);
  if (slabUsed + size > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  // 8-byte aligned, as Node's pool does.
  slabUsed = (slabUsed + size + 7) & ~7;
  return out;
}

/** Size of a length-delimited field (tag < 16, so one tag byte) with `len` payload bytes. */
function fieldSize(len: number): number {
  return 1 + varintSize(len) + len;
}

function strField(s: string): number {
  return s.length === 0 ? 0 : fieldSize(Buffer.byteLength(s));
}

/** Writes a string field (omitted when empty, as proto3 does); returns the offset after it. */
function writeStr(buf: Buffer, off: number, field: number, s: string): number {
  if (s.length === 0) return off;
  buf[off++] = (field << 3) | 2;
  const len = Buffer.byteLength(s);
  off = writeVarint(buf, off, len);
  return off + buf.write(s, off, "utf8");
}

function writeBytes(buf: Buffer, off: number, field: number, bytes: Uint8Array): number {
  buf[off++] = (field << 3) | 2;
  off = writeVarint(buf, off, bytes.byteLength);
  buf.set(bytes, off);
  return off + bytes.byteLength;
}

function anySize(a: AnyMessage): number {
  return strField(a.type_url) + fieldSize(a.value.byteLength);
}

function writeAny(buf: Buffer, off: number, field: number, a: AnyMessage, size: number): number {
  buf[off++] = (field << 3) | 2;
  off = writeVarint(buf, off, size);
  off = writeStr(buf, off, 1, a.type_url);
  return writeBytes(buf, off, 2, a.value);
}

/** envoy.service.discovery.v3.DiscoveryResponse: version_info = 1, resources = 2, type_url = 4, nonce = 5. */
export function encodeDiscoveryResponse(r: DiscoveryResponse): Buffer {
  const sizes = r.resources.map(anySize);
  let total = strField(r.version_info) + strField(r.type_url) + strField(r.nonce);
  for (const s of sizes) total += fieldSize(s);
  const buf = scratch(total);
  let off = writeStr(buf, 0, 1, r.version_info);
  r.resources.forEach((a, i) => (off = writeAny(buf, off, 2, a, sizes[i]!)));
  off = writeStr(buf, off, 4, r.type_url);
  off = writeStr(buf, off, 5, r.nonce);
  return checked(buf, off, "DiscoveryResponse");
}

/**
 * envoy.service.discovery.v3.DeltaDiscoveryResponse: system_version_info = 1, resources = 2
 * (Resource: version = 1, resource = 2, name = 3), type_url = 4, nonce = 5, removed_resources = 6.
 */
export function encodeDeltaDiscoveryResponse(r: DeltaDiscoveryResponse): Buffer {
  const anySizes = r.resources.map((x) => anySize(x.resource));
  const resSizes = r.resources.map((x, i) => strField(x.version) + fieldSize(anySizes[i]!) + strField(x.name));
  let total = strField(r.system_version_info) + strField(r.type_url) + strField(r.nonce);
  for (const s of resSizes) total += fieldSize(s);
  for (const n of r.removed_resources) total += fieldSize(Buffer.byteLength(n));
  const buf = scratch(total);
  let off = writeStr(buf, 0, 1, r.system_version_info);
  r.resources.forEach((x, i) => {
    buf[off++] = (2 << 3) | 2;
    off = writeVarint(buf, off, resSizes[i]!);
    off = writeStr(buf, off, 1, x.version);
    off = writeAny(buf, off, 2, x.resource, anySizes[i]!);
    off = writeStr(buf, off, 3, x.name);
  });
  off = writeStr(buf, off, 4, r.type_url);
  off = writeStr(buf, off, 5, r.nonce);
  for (const n of r.removed_resources) {
    // A removed name is written even when empty: it is an element of a list, not a default.
    buf[off++] = (6 << 3) | 2;
    off = writeVarint(buf, off, Buffer.byteLength(n));
    off += buf.write(n, off, "utf8");
  }
  return checked(buf, off, "DeltaDiscoveryResponse");
}

function checked(buf: Buffer, end: number, what: string): Buffer {
  if (end !== buf.length) throw new Error(`encoding ${what}: wrote ${end} of ${buf.length} bytes`);
  return buf;
}

let requestTypes: { sotw: protobuf.Type; delta: protobuf.Type } | undefined;

function types(): { sotw: protobuf.Type; delta: protobuf.Type } {
  requestTypes ??= {
    sotw: envoyRoot().lookupType("envoy.service.discovery.v3.DiscoveryRequest"),
    delta: envoyRoot().lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest"),
  };
  return requestTypes;
}

/**
 * Decodes a request into protobufjs' message object: fields keep the proto's snake_case names,
 * unset strings read "" and unset messages null (the sessions treat both as absent).
 */
export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  return types().sotw.decode(bytes) as unknown as DiscoveryRequest;
}

export function decodeDeltaDiscoveryRequest(bytes: Uint8Array): DeltaDiscoveryRequest {
  return types().delta.decode(bytes) as unknown as DeltaDiscoveryRequest;
}
