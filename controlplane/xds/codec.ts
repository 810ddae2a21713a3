import protobuf from "protobufjs";
import { envoyRoot } from "./protos.ts";
import { TYPE_PREFIX } from "./type-urls.ts";

/** A JSON-like object written the way Envoy YAML reads (snake_case, Any as `@type`). */
export type ResourceObject = { [key: string]: unknown };

const ANY = "google.protobuf.Any";

function typeNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf("/");
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

function lookupType(typeUrlOrName: string, at: string): protobuf.Type {
  try {
    return envoyRoot().lookupType(typeNameOf(typeUrlOrName));
  } catch {
    throw new Error(`${at}: unknown message type ${typeUrlOrName}`);
  }
}

/**
 * protobufjs' fromObject silently drops unknown keys, so a typo in a resource would reach
 * Envoy as a missing field. This walk rejects unknown fields, bad enum names and two members
 * of one oneof, naming the path.
 */
function checkStrict(type: protobuf.Type, value: unknown, at: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${at}: expected an object for ${type.fullName.slice(1)}`);
  }
  const obj = value as ResourceObject;
  if (type.fullName === `.${ANY}`) {
    const inner = obj["@type"];
    if (typeof inner !== "string") {
      for (const k of Object.keys(obj)) {
        if (k !== "type_url" && k !== "value") throw new Error(`${at}: Any without @type has field ${k}`);
      }
      return;
    }
    const { "@type": _ignored, ...rest } = obj;
    checkStrict(lookupType(inner, at), rest, `${at}<${typeNameOf(inner)}>`);
    return;
  }
  const oneofSeen = new Map<string, string>();
  for (const [key, fieldValue] of Object.entries(obj)) {
    const field = type.fields[key];
    if (!field) throw new Error(`${at}.${key}: no such field in ${type.fullName.slice(1)}`);
    if (field.partOf) {
      const prior = oneofSeen.get(field.partOf.name);
      if (prior) throw new Error(`${at}: ${prior} and ${key} are both set but belong to oneof ${field.partOf.name}`);
      oneofSeen.set(field.partOf.name, key);
    }
    if (fieldValue === undefined) continue;
    const check = (v: unknown, p: string): void => {
      if (field.resolvedType instanceof protobuf.Type) checkStrict(field.resolvedType, v, p);
      else if (field.resolvedType instanceof protobuf.Enum) {
        const values = field.resolvedType.values;
        if (!(typeof v === "string" && v in values) && !(typeof v === "number" && Object.values(values).includes(v))) {
          throw new Error(`${p}: ${String(v)} is not a value of ${field.resolvedType.fullName.slice(1)}`);
        }
      }
    };
    if (field.map) {
      for (const [k, v] of Object.entries(fieldValue as ResourceObject)) check(v, `${at}.${key}[${k}]`);
    } else if (field.repeated) {
      if (!Array.isArray(fieldValue)) throw new Error(`${at}.${key}: expected a list`);
      fieldValue.forEach((v, i) => check(v, `${at}.${key}[${i}]`));
    } else {
      check(fieldValue, `${at}.${key}`);
    }
  }
}

/**
 * Encodes `obj` as the message named by `typeUrl`, rejecting anything protobufjs would drop.
 * `strict: false` skips that walk for per-Envoy variants of an object already checked in its
 * canonical form (they differ only in values, and the walk dominates encoding time at scale).
 */
export function encodeMessage(typeUrl: string, obj: ResourceObject, opts: { strict?: boolean } = {}): Uint8Array {
  const type = lookupType(typeUrl, "encode");
  if (opts.strict !== false) checkStrict(type, obj, typeNameOf(typeUrl));
  return type.encode(type.fromObject(obj)).finish();
}

/** Decodes message bytes back into the same YAML-like form (nested Any as `@type`). */
export function decodeMessage(typeUrl: string, bytes: Uint8Array): ResourceObject {
  const type = lookupType(typeUrl, "decode");
  return type.toObject(type.decode(bytes), { json: true, enums: String, longs: String, defaults: false }) as ResourceObject;
}

export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export function toAny(typeUrl: string, obj: ResourceObject, opts: { strict?: boolean } = {}): AnyMessage {
  const url = typeUrl.startsWith(TYPE_PREFIX) ? typeUrl : TYPE_PREFIX + typeUrl;
  const bytes = encodeMessage(url, obj, opts);
  // An exact-size buffer: a slice of Node's shared 8 KiB pool would keep the whole slab alive
  // for as long as a snapshot caches it (once per Envoy for per-Envoy variants).
  const value = Buffer.allocUnsafeSlow(bytes.byteLength);
  value.set(bytes);
  return { type_url: url, value };
}
