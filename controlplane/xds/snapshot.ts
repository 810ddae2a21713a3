import { createHash } from "node:crypto";
import { toAny, type AnyMessage, type ResourceObject } from "./codec.ts";
import { envoyRoot } from "./protos.ts";
import { isNativeNoop, isVariantResource, type DeliveryVariant, type ResourceSet, type VariantResource } from "./resources.ts";
import { spliceTemplate, type SpliceTemplate } from "./splice.ts";

export interface EncodedResource {
  name: string;
  /** Hash of the encoded (canonical) bytes: identical content, identical version, on any replica. */
  version: string;
  /** The sha256 of the Wasm module this resource names, if any. */
  moduleSha256?: string;
  /** A disabled filter's native no-op for an ECDS-only Envoy (resources.ts isNativeNoop). */
  nativeNoop?: boolean;
  /**
   * The bytes for one Envoy (spliced per node from one encoding, or memoised per variant);
   * `undefined` gives the canonical form.
   */
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
        const entry: EncodedResource = { name, version: shortHash(any.value), anyFor: () => any };
        if (isNativeNoop(resource)) entry.nativeNoop = true;
        encoded.set(name, entry);
        continue;
      }
      const canonical = toAny(typeUrl, resource.canonical);
      const prior = previous?.types.get(typeUrl)?.resources.get(name);
      if (prior && prior.version === shortHash(canonical.value)) {
        encoded.set(name, prior);
        continue;
      }
      const memo = new Map<string, AnyMessage>();
      const templates = new Map<string, SpliceTemplate | null>();
      const entry: EncodedResource = {
        name,
        version: shortHash(canonical.value),
        anyFor(variant) {
          if (!variant) return canonical;
          if (resource.nodeText && variant.nodeId !== "") {
            // One encoding per variant of everything but the node (a handful per change), not
            // one per Envoy; nothing per Envoy is kept (memory per idle stream). Keyed by every
            // other field of the variant, so it is never coarser than `key`.
            const shared = `${variant.nackOnCacheMiss}/${variant.afterFetch === true}/${variant.source}`;
            let template = templates.get(shared);
            if (template === undefined) templates.set(shared, (template = nodeTemplate(typeUrl, resource, variant) ?? null));
            if (template) return { type_url: canonical.type_url, value: template.render(resource.nodeText(variant.nodeId)) };
          }
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

/** Stands for the node id while a node-independent encoding is made; URL-safe, so kept as is. */
const NODE_PLACEHOLDER = "wasm-xds-node-placeholder-5f0c9e";
/** Varint lengths change size with it: a splice that mishandled that would show at once. */
const NODE_PROBE = `probe-${"n".repeat(200)}/é`;

/**
 * The splice template of a node-dependent resource for the parts of `variant` other than the
 * node, checked once against a direct encoding; undefined (encode per Envoy) if it fails.
 */
function nodeTemplate(typeUrl: string, resource: VariantResource, variant: DeliveryVariant): SpliceTemplate | undefined {
  const nodeText = resource.nodeText!;
  const placeholder = toAny(typeUrl, resource.render({ ...variant, nodeId: NODE_PLACEHOLDER }), { strict: false });
  const type = envoyRoot().lookupType(placeholder.type_url.slice(placeholder.type_url.lastIndexOf("/") + 1));
  const template = spliceTemplate(type, placeholder.value, nodeText(NODE_PLACEHOLDER));
  if (!template) return undefined;
  const direct = toAny(typeUrl, resource.render({ ...variant, nodeId: NODE_PROBE }), { strict: false });
  return template.render(nodeText(NODE_PROBE)).equals(direct.value) ? template : undefined;
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
