// Per-Envoy bytes of a resource made from one encoding. An ECDS resource differs between Envoys
// only in a few characters of its module URL (the node id, ecds-delivery.ts); encoding it with
// protobufjs for each Envoy was half of the server's CPU per change at 5,000 streams. Instead the
// resource is encoded once with a placeholder where the node's text goes, and each Envoy's copy
// is that encoding with the placeholder replaced and the length prefixes of the fields around it
// rewritten: byte copies, no object walk. Which fields enclose the placeholder is read from the
// wire format, guided by the message types (including what an Any holds).
import protobuf from "protobufjs";
import { scratch, varintSize, writeVarint } from "./wire.ts";

/** A length prefix of a field enclosing the placeholder (outermost first). */
interface Enclosing {
  /** Offset of the length varint. */
  at: number;
  /** Its size in bytes as encoded. */
  size: number;
  /** The length it holds. */
  length: number;
}

export interface SpliceTemplate {
  /** The encoding with `text` in place of the placeholder (scratch memory, wire.ts: keep it briefly). */
  render(text: string): Buffer;
}

function readVarint(buf: Uint8Array, pos: number, end: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (pos >= end || shift > 28) throw new Error("bad varint");
    const b = buf[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, pos];
    shift += 7;
  }
}

/** The type an Any's payload holds, from its type_url (field 1). */
function anyPayloadType(root: protobuf.Root, buf: Uint8Array, start: number, end: number): protobuf.Type | undefined {
  let pos = start;
  while (pos < end) {
    const [key, p] = readVarint(buf, pos, end);
    if ((key & 7) !== 2) return undefined;
    const [len, q] = readVarint(buf, p, end);
    if (key >>> 3 === 1) {
      const url = Buffer.from(buf.buffer, buf.byteOffset + q, len).toString("utf8");
      try {
        return root.lookupType(url.slice(url.lastIndexOf("/") + 1));
      } catch {
        return undefined;
      }
    }
    pos = q + len;
  }
  return undefined;
}

/**
 * Fills `chain` with the length prefixes of the fields of `type` (in buf[start, end)) that
 * enclose [from, to); true when the innermost one is a string or bytes field holding it.
 */
function enclose(type: protobuf.Type, buf: Uint8Array, start: number, end: number, from: number, to: number, chain: Enclosing[]): boolean {
  let pos = start;
  while (pos < end) {
    const [key, afterKey] = readVarint(buf, pos, end);
    const wireType = key & 7;
    if (wireType === 0) pos = readVarint(buf, afterKey, end)[1];
    else if (wireType === 1) pos = afterKey + 8;
    else if (wireType === 5) pos = afterKey + 4;
    else if (wireType !== 2) return false;
    else {
      const [length, payload] = readVarint(buf, afterKey, end);
      pos = payload + length;
      if (from < payload || to > pos) continue;
      chain.push({ at: afterKey, size: payload - afterKey, length });
      const field = type.fieldsById[key >>> 3];
      if (!field || field.map) return false;
      if (type.fullName === ".google.protobuf.Any") {
        if (field.id !== 2) return false;
        const inner = anyPayloadType(type.root as protobuf.Root, buf, start, end);
        return inner !== undefined && enclose(inner, buf, payload, pos, from, to, chain);
      }
      if (field.resolvedType instanceof protobuf.Type) return enclose(field.resolvedType, buf, payload, pos, from, to, chain);
      return field.type === "string" || field.type === "bytes";
    }
  }
  return false;
}

/**
 * A template for `bytes` (an encoded `type`) in which `placeholder` occurs exactly once, inside
 * one string or bytes field; undefined when it does not (the caller then encodes per Envoy).
 */
export function spliceTemplate(type: protobuf.Type, bytes: Uint8Array, placeholder: string): SpliceTemplate | undefined {
  const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ph = Buffer.from(placeholder, "utf8");
  const from = source.indexOf(ph);
  if (from < 0 || source.indexOf(ph, from + 1) >= 0) return undefined;
  const to = from + ph.length;
  const chain: Enclosing[] = [];
  try {
    if (!enclose(type, source, 0, source.length, from, to, chain)) return undefined;
  } catch {
    return undefined;
  }
  // Kept apart from the caller's buffer (which may be a slice of a shared pool).
  const base = Buffer.from(source);
  const grown = new Array<number>(chain.length);
  const sizes = new Array<number>(chain.length);
  return {
    render(text: string): Buffer {
      const insert = Buffer.byteLength(text, "utf8");
      // Innermost first: a prefix grows by the text's growth plus its inner prefixes' growth.
      let growth = insert - ph.length;
      for (let i = chain.length - 1; i >= 0; i--) {
        const e = chain[i]!;
        grown[i] = e.length + growth;
        sizes[i] = varintSize(grown[i]!);
        growth += sizes[i]! - e.size;
      }
      // Per-Envoy bytes are written into a response and dropped: scratch memory (wire.ts).
      const out = scratch(base.length + growth);
      let src = 0;
      let dst = 0;
      for (let i = 0; i < chain.length; i++) {
        const e = chain[i]!;
        dst += base.copy(out, dst, src, e.at);
        dst = writeVarint(out, dst, grown[i]!);
        src = e.at + e.size;
      }
      dst += base.copy(out, dst, src, from);
      dst += out.write(text, dst, "utf8");
      base.copy(out, dst, to);
      return out;
    },
  };
}
