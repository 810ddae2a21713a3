// The hand-written wire paths of the fan-out (controlplane/xds/wire.ts, splice.ts): what they
// produce must be what protobufjs produces from objects, byte for byte where it is a resource.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toAny } from "../../../controlplane/xds/codec.ts";
import { envoyRoot } from "../../../controlplane/xds/protos.ts";
import {
  buildResources, moduleUrl, type DeliveryVariant, type ResourceInputs, type VariantResource,
} from "../../../controlplane/xds/resources.ts";
import { encodeSnapshot } from "../../../controlplane/xds/snapshot.ts";
import { spliceTemplate } from "../../../controlplane/xds/splice.ts";
import { EXTENSION_CONFIG, LISTENER } from "../../../controlplane/xds/type-urls.ts";
import {
  decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, encodeDeltaDiscoveryResponse, encodeDiscoveryResponse,
} from "../../../controlplane/xds/wire.ts";

const SHA = "c".repeat(64);

function inputs(overrides: Partial<ResourceInputs> = {}): ResourceInputs {
  return {
    listener: { address: "127.0.0.1", port: 10000 },
    upstream: { host: "echo", port: 8080 },
    moduleServer: { host: "127.0.0.1", port: 18080 },
    filters: [{
      name: "f1", sha256: SHA, rootId: "r1", enabled: true, configuration: "{\"a\":1}", allowedCapabilities: ["proxy_log"],
    }],
    ...overrides,
  };
}

/** Node ids whose URL text is short, long enough to change length-prefix sizes, or escaped. */
const NODE_IDS = ["n", "sim-envoy-42", "x".repeat(120), "y".repeat(20_000), "ü node &=?#/+", "a.b_c-d*e"];

describe("per-Envoy ECDS bytes spliced into one encoding", () => {
  const setups = [
    ["one module server", {}],
    ["replicas (peers, retry policy)", { modulePeers: [{ host: "10.0.0.2", port: 18080 }] }],
  ] as const;
  for (const [label, extra] of setups) {
    it(`equal a direct encoding for every node id and variant (${label})`, () => {
      const set = buildResources(inputs(extra));
      const resource = set.get(EXTENSION_CONFIG)!.get("f1") as VariantResource;
      assert.equal(typeof resource.nodeText, "function", "ECDS resources declare where the node goes");
      const encoded = encodeSnapshot(set).types.get(EXTENSION_CONFIG)!.resources.get("f1")!;
      for (const nodeId of NODE_IDS) {
        for (const [nackOnCacheMiss, afterFetch] of [[false, false], [true, false], [true, true]] as const) {
          const variant: DeliveryVariant = { nodeId, nackOnCacheMiss, afterFetch, source: "ads" };
          const direct = toAny(EXTENSION_CONFIG, resource.render(variant));
          const spliced = encoded.anyFor(variant);
          assert.equal(spliced.type_url, direct.type_url);
          const what = `node ${nodeId.slice(0, 20)} nack=${nackOnCacheMiss} fetched=${afterFetch}`;
          assert.ok(Buffer.from(spliced.value).equals(direct.value), what);
        }
      }
    });
  }

  it("the module URL in the spliced bytes names the node as moduleUrl does", () => {
    const encoded = encodeSnapshot(buildResources(inputs())).types.get(EXTENSION_CONFIG)!.resources.get("f1")!;
    const any = encoded.anyFor({ nodeId: "ü node", nackOnCacheMiss: true, afterFetch: true, source: "ads" });
    assert.ok(Buffer.from(any.value).includes(Buffer.from(moduleUrl({ host: "127.0.0.1", port: 18080 }, SHA, "ü node", false, true))));
  });

  it("declines a placeholder that occurs twice or not at all (the caller then encodes per Envoy)", () => {
    const type = envoyRoot().lookupType("envoy.config.core.v3.TypedExtensionConfig");
    const twice = { name: "PH", typed_config: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: "PH" } };
    const bytes = toAny(EXTENSION_CONFIG, twice).value;
    assert.equal(spliceTemplate(type, bytes, "PH"), undefined, "twice");
    assert.equal(spliceTemplate(type, bytes, "absent"), undefined, "not at all");
  });

  it("finds the field inside what an Any holds and rewrites every length around it", () => {
    const type = envoyRoot().lookupType("envoy.config.core.v3.TypedExtensionConfig");
    const obj = (value: string) => ({ name: "n", typed_config: { "@type": "type.googleapis.com/google.protobuf.StringValue", value } });
    const template = spliceTemplate(type, toAny(EXTENSION_CONFIG, obj("PH")).value, "PH");
    assert.ok(template, "a template");
    for (const text of ["", "short", "z".repeat(300), "é".repeat(10_000)]) {
      assert.ok(template.render(text).equals(toAny(EXTENSION_CONFIG, obj(text)).value), `${text.length} characters`);
    }
  });
});

describe("responses written without protobufjs", () => {
  const snapshot = encodeSnapshot(buildResources(inputs()));
  const listener = snapshot.types.get(LISTENER)!.resources.get("wasm_listener")!.anyFor();
  const ecds = snapshot.types.get(EXTENSION_CONFIG)!.resources.get("f1")!.anyFor({ nodeId: "n1", nackOnCacheMiss: false, source: "ads" });

  it("a DiscoveryResponse decodes to what was given", () => {
    const type = envoyRoot().lookupType("envoy.service.discovery.v3.DiscoveryResponse");
    const response = { version_info: "v1", type_url: LISTENER, nonce: "7", resources: [listener, ecds] };
    const decoded = type.toObject(type.decode(encodeDiscoveryResponse(response)), { defaults: false }) as typeof response;
    assert.equal(decoded.version_info, "v1");
    assert.equal(decoded.type_url, LISTENER);
    assert.equal(decoded.nonce, "7");
    assert.deepEqual(decoded.resources.map((r) => r.type_url), [listener.type_url, ecds.type_url]);
    assert.ok(Buffer.from(decoded.resources[1]!.value).equals(ecds.value));
    // Byte-identical to protobufjs' own encoding of the same object.
    assert.ok(encodeDiscoveryResponse(response).equals(type.encode(type.fromObject(response)).finish()));
  });

  it("a DeltaDiscoveryResponse decodes to what was given, removed names included", () => {
    const type = envoyRoot().lookupType("envoy.service.discovery.v3.DeltaDiscoveryResponse");
    const response = {
      system_version_info: "sv", type_url: EXTENSION_CONFIG, nonce: "3",
      resources: [{ name: "f1", version: "abc", resource: ecds }], removed_resources: ["gone", "ü"],
    };
    const decoded = type.toObject(type.decode(encodeDeltaDiscoveryResponse(response)), { defaults: false }) as typeof response;
    assert.equal(decoded.system_version_info, "sv");
    assert.equal(decoded.nonce, "3");
    assert.deepEqual(decoded.removed_resources, ["gone", "ü"]);
    assert.equal(decoded.resources[0]!.name, "f1");
    assert.equal(decoded.resources[0]!.version, "abc");
    assert.ok(Buffer.from(decoded.resources[0]!.resource.value).equals(ecds.value));
  });

  it("requests decode with snake_case fields; unset ones read as absent", () => {
    const sotw = envoyRoot().lookupType("envoy.service.discovery.v3.DiscoveryRequest");
    const ackObject = { type_url: LISTENER, version_info: "v", response_nonce: "2", resource_names: ["a"] };
    const ack = decodeDiscoveryRequest(sotw.encode(sotw.fromObject(ackObject)).finish());
    assert.equal(ack.type_url, LISTENER);
    assert.equal(ack.response_nonce, "2");
    assert.deepEqual(ack.resource_names, ["a"]);
    assert.ok(!ack.error_detail, "no error_detail");
    assert.ok(!ack.node?.id, "no node");
    const delta = envoyRoot().lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest");
    const sub = decodeDeltaDiscoveryRequest(delta.encode(delta.fromObject({
      node: { id: "n", cluster: "c" }, type_url: EXTENSION_CONFIG,
      initial_resource_versions: { f1: "v1" }, error_detail: { message: "bad" },
    })).finish());
    assert.equal(sub.node?.id, "n");
    assert.deepEqual({ ...sub.initial_resource_versions }, { f1: "v1" });
    assert.equal(sub.error_detail?.message, "bad");
    assert.deepEqual([...(sub.resource_names_subscribe ?? [])], []);
  });
});
