// The resources the go-control-plane peer serves, produced by our own controlplane/xds code
// (buildResources + encodeSnapshot) and handed to the Go program as protobuf bytes, so both
// servers serve the same resources: same bytes, same type versions (SotW version_info).
//
// What cannot be the same: our server renders each Envoy its own ECDS copy (the node id in the
// module URL, nack_on_code_cache_miss per delivery state, resources.ts DeliveryVariant). A shared
// go-control-plane snapshot has one copy for everyone, so the peer serves the canonical form
// (no node id in the URL, nack_on_code_cache_miss: true), a few bytes shorter than ours.
import { buildResources } from "../../controlplane/xds/resources.ts";
import { encodeSnapshot, type Snapshot } from "../../controlplane/xds/snapshot.ts";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import { resourceInputs } from "./fanout-resources.ts";

export interface ExportedResource {
  name: string;
  /** The encoded resource (Any.value), base64. */
  value: string;
}

export interface ExportedType {
  typeUrl: string;
  /** Our type version: the SotW version_info both servers send. */
  version: string;
  resources: ExportedResource[];
}

/** The file bench/go-control-plane/main.go reads (--resources). */
export interface PeerExport {
  generations: { types: ExportedType[] }[];
  /** Our per-Envoy ECDS bytes for one node (generation 0, both cache-miss flags): --snapshot per-node checks against them. */
  ecdsSamples: { nodeId: string; name: string; nack: boolean; value: string }[];
}

export const SAMPLE_NODE = "sim-envoy-sotw-0";

/** Generations 0..count-1 (0 initial, each later one changes one filter's module). */
export function exportGenerations(count: number): PeerExport {
  const generations: PeerExport["generations"] = [];
  let previous: Snapshot | undefined;
  for (let gen = 0; gen < count; gen++) {
    const snapshot = encodeSnapshot(buildResources(resourceInputs(gen)), previous);
    previous = snapshot;
    const types: ExportedType[] = [];
    for (const [typeUrl, t] of snapshot.types) {
      const resources = [...t.resources.values()].map((r) => {
        // anyFor() without a variant: the canonical bytes, the ones every replica versions.
        const any = r.anyFor();
        if (any.type_url !== typeUrl) throw new Error(`peer export: ${r.name} encodes as ${any.type_url}, listed under ${typeUrl}`);
        return { name: r.name, value: Buffer.from(any.value).toString("base64") };
      });
      types.push({ typeUrl, version: t.version, resources });
    }
    generations.push({ types });
  }
  const ecdsSamples: PeerExport["ecdsSamples"] = [];
  const first = encodeSnapshot(buildResources(resourceInputs(0)));
  for (const r of first.types.get(EXTENSION_CONFIG)?.resources.values() ?? []) {
    for (const nack of [false, true]) {
      const value = Buffer.from(r.anyFor({ nodeId: SAMPLE_NODE, nackOnCacheMiss: nack, source: "ads" }).value).toString("base64");
      ecdsSamples.push({ nodeId: SAMPLE_NODE, name: r.name, nack, value });
    }
  }
  return { generations, ecdsSamples };
}

/** Bytes per ECDS resource in the canonical form vs one Envoy's variant, for the report. */
export function ecdsSizes(nodeId: string): { canonical: number; perEnvoy: number } {
  const snapshot = encodeSnapshot(buildResources(resourceInputs(0)));
  let canonical = 0;
  let perEnvoy = 0;
  for (const r of snapshot.types.get(EXTENSION_CONFIG)?.resources.values() ?? []) {
    canonical += r.anyFor().value.length;
    perEnvoy += r.anyFor({ nodeId, nackOnCacheMiss: true, source: "ads" }).value.length;
  }
  return { canonical, perEnvoy };
}

/**
 * What a simulated Envoy ACKs after generation `gen` reached it from our server: the ECDS type
 * version (SotW) or the changed filter's name@version (delta), as our encodeSnapshot versions them.
 */
export function ourAckKeys(gen: number, filter: string): { sotw: string; delta: string } {
  let snapshot: Snapshot | undefined;
  for (let g = 0; g <= gen; g++) snapshot = encodeSnapshot(buildResources(resourceInputs(g)), snapshot);
  const ecds = snapshot!.types.get(EXTENSION_CONFIG);
  const resource = ecds?.resources.get(filter);
  if (!ecds || !resource) throw new Error(`peer export: generation ${gen} has no ECDS resource ${filter}`);
  return { sotw: ecds.version, delta: `${filter}@${resource.version}` };
}
