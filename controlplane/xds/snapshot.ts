import { createHash } from "node:crypto";
import { toAny, type AnyMessage, type ResourceObject } from "./codec.ts";
import { isVariantResource, type DeliveryVariant, type ResourceSet } from "./resources.ts";

export interface EncodedResource {
  name: string;
  /** Hash of the encoded (canonical) bytes: identical content, identical version, on any replica. */
  version: string;
  /** The sha256 of the Wasm module this resource names, if any. */
  moduleSha256?: string;
  /** The bytes for one Envoy (memoised per variant); `undefined` gives the canonical form. */
  anyFor(variant?: DeliveryVariant): AnyMessage;
}

export interface TypeSnapshot {
  /** Hash over (name, version) of every resource of the type. */
  version: string;
  resources: ReadonlyMap<string, EncodedResource>;
}

/** An immutable, fully encoded view of every resource, keyed by type URL. */
export interface Snapshot {
  types: ReadonlyMap<string, TypeSnapshot>;
}

function shortHash(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
}

/**
 * Encodes a resource set. Given the previous snapshot, a resource whose canonical bytes did not
 * change keeps its previous EncodedResource, per-Envoy variants included: a change to one filter
 * re-encodes that filter only, not every filter for every Envoy.
 */
export function encodeSnapshot(set: ResourceSet, previous?: Snapshot): Snapshot {
  const types = new Map<string, TypeSnapshot>();
  for (const [typeUrl, resources] of set) {
    const encoded = new Map<string, EncodedResource>();
    for (const name of [...resources.keys()].sort()) {
      const resource = resources.get(name)!;
      if (!isVariantResource(resource)) {
        const any = toAny(typeUrl, resource);
        encoded.set(name, { name, version: shortHash(any.value), anyFor: () => any });
        continue;
      }
      const canonical = toAny(typeUrl, resource.canonical);
      const prior = previous?.types.get(typeUrl)?.resources.get(name);
      if (prior && prior.version === shortHash(canonical.value)) {
        encoded.set(name, prior);
        continue;
      }
      const memo = new Map<string, AnyMessage>();
      const entry: EncodedResource = {
        name,
        version: shortHash(canonical.value),
        anyFor(variant) {
          if (!variant) return canonical;
          const key = resource.key(variant);
          let any = memo.get(key);
          if (!any) memo.set(key, (any = toAny(typeUrl, resource.render(variant), { strict: false })));
          return any;
        },
      };
      const sha = moduleSha256Of(resource.canonical);
      if (sha) entry.moduleSha256 = sha;
      encoded.set(name, entry);
    }
    types.set(typeUrl, { version: versionOf(encoded.values()), resources: encoded });
  }
  return { types };
}

/** The version of a set of resources: a hash over (name, version) in name order. */
function versionOf(resources: Iterable<EncodedResource>): string {
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return shortHash(sorted.map((r) => `${r.name}=${r.version}`).join("\n"));
}

function moduleSha256Of(resource: ResourceObject): string | undefined {
  // TypedExtensionConfig -> Wasm -> PluginConfig -> vm_config.code.remote.sha256
  const sha = (resource as { typed_config?: { config?: { vm_config?: { code?: { remote?: { sha256?: unknown } } } } } })
    .typed_config?.config?.vm_config?.code?.remote?.sha256;
  return typeof sha === "string" ? sha : undefined;
}

/** Type URLs whose version differs between two snapshots (a missing type counts as changed). */
export function changedTypes(before: Snapshot | undefined, after: Snapshot): string[] {
  const changed: string[] = [];
  for (const [typeUrl, t] of after.types) {
    if (before?.types.get(typeUrl)?.version !== t.version) changed.push(typeUrl);
  }
  return changed;
}
