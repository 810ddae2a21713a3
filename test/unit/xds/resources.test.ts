import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeMessage, encodeMessage, toAny } from "../../../controlplane/xds/codec.ts";
import { buildResources, isVariantResource, moduleUrl, type ResourceInputs, type VariantResource } from "../../../controlplane/xds/resources.ts";
import type { ResourceObject } from "../../../controlplane/xds/codec.ts";

/** The canonical object of a resource (ECDS resources also render per-Envoy variants). */
const plain = (r: ResourceObject | VariantResource | undefined): ResourceObject => {
  assert.ok(r, "resource exists");
  return isVariantResource(r) ? r.canonical : r;
};
import { encodeSnapshot } from "../../../controlplane/xds/snapshot.ts";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../../controlplane/xds/type-urls.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

function inputs(overrides: Partial<ResourceInputs> = {}): ResourceInputs {
  return {
    listener: { address: "127.0.0.1", port: 10000 },
    upstream: { host: "echo", port: 8080 },
    moduleServer: { host: "127.0.0.1", port: 18080 },
    filters: [
      { name: "add-header", sha256: SHA_A, rootId: "add-header", enabled: true, configuration: "hello" },
      { name: "second", sha256: SHA_B, rootId: "second_root", enabled: false },
    ],
    ...overrides,
  };
}

test("every resource round-trips through Envoy's protos unchanged", () => {
  for (const [typeUrl, resources] of buildResources(inputs())) {
    for (const [name, obj] of resources) {
      const decoded = decodeMessage(typeUrl, encodeMessage(typeUrl, plain(obj)));
      // Decoding fills Any with @type and keeps everything else; compare as JSON trees.
      assert.deepEqual(normalise(decoded), normalise(plain(obj)), `${typeUrl} ${name}`);
    }
  }
});

test("the listener chains one ECDS slot per filter, in order, then the router", () => {
  const listener = decodeMessage(LISTENER, encodeMessage(LISTENER, plain(buildResources(inputs()).get(LISTENER)!.get("wasm_listener"))));
  const hcm = (listener as any).filter_chains[0].filters[0].typed_config; // any: the test drills into a decoded tree whose shape the assertions check
  assert.equal(hcm["@type"], "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
  assert.deepEqual(hcm.http_filters.map((f: { name: string }) => f.name), ["add-header", "second", "envoy.filters.http.router"]);
  assert.deepEqual(hcm.http_filters[0].config_discovery.type_urls, ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]);
  assert.deepEqual(hcm.http_filters[0].config_discovery.config_source, { ads: {}, resource_api_version: "V3" });
});

test("the ECDS resource points Envoy at the module server by sha256", () => {
  const ecds = buildResources(inputs()).get(EXTENSION_CONFIG)!;
  assert.deepEqual([...ecds.keys()].sort(), ["add-header", "second"]);
  const decoded = decodeMessage(EXTENSION_CONFIG, encodeMessage(EXTENSION_CONFIG, plain(ecds.get("add-header")))) as any; // any: as above
  const plugin = decoded.typed_config.config;
  assert.equal(decoded.typed_config["@type"], "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
  assert.equal(plugin.root_id, "add-header");
  assert.equal(plugin.vm_config.code.remote.sha256, SHA_A);
  assert.equal(plugin.vm_config.code.remote.http_uri.uri, `http://127.0.0.1:18080/modules/${SHA_A}.wasm`);
  assert.equal(plugin.vm_config.code.remote.http_uri.cluster, "wasm_modules");
  assert.deepEqual(plugin.configuration, { "@type": "type.googleapis.com/google.protobuf.StringValue", value: "hello" });
  assert.equal(moduleUrl({ host: "::1", port: 1 }, SHA_A), `http://[::1]:1/modules/${SHA_A}.wasm`);
});

test("a disabled filter is switched off on the route, not removed from the listener", () => {
  const route = decodeMessage(ROUTE, encodeMessage(ROUTE, plain(buildResources(inputs()).get(ROUTE)!.get("local_route")))) as any; // any: as above
  assert.deepEqual(route.virtual_hosts[0].typed_per_filter_config, {
    second: { "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", disabled: true },
  });
});

test("clusters use DNS only for names", () => {
  const clusters = buildResources(inputs()).get(CLUSTER)!;
  assert.equal(plain(clusters.get("upstream")).type, "STRICT_DNS");
  assert.equal(plain(clusters.get("wasm_modules")).type, "EDS");
  assert.deepEqual([...buildResources(inputs()).get(ENDPOINT)!.keys()], ["wasm_modules"]);
});

test("the codec rejects fields protobufjs would silently drop", () => {
  assert.throws(() => encodeMessage(LISTENER, { name: "x", adress: {} }), /\.adress: no such field in envoy\.config\.listener\.v3\.Listener/);
  assert.throws(() => toAny(CLUSTER, { name: "x", type: "NOT_A_TYPE" }), /NOT_A_TYPE is not a value/);
  assert.throws(
    () => encodeMessage(EXTENSION_CONFIG, { name: "x", typed_config: { "@type": "type.googleapis.com/envoy.nope.Nope" } }),
    /unknown message type/,
  );
});

test("versions are content hashes: same inputs, same versions; a change moves only its types", () => {
  const a = encodeSnapshot(buildResources(inputs()));
  const b = encodeSnapshot(buildResources(inputs()));
  for (const [typeUrl, t] of a.types) assert.equal(b.types.get(typeUrl)!.version, t.version);

  const toggled = inputs();
  toggled.filters = toggled.filters.map((f) => ({ ...f, enabled: true }));
  const c = encodeSnapshot(buildResources(toggled));
  assert.notEqual(c.types.get(ROUTE)!.version, a.types.get(ROUTE)!.version, "RDS changes on toggle");
  for (const t of [CLUSTER, LISTENER, EXTENSION_CONFIG]) assert.equal(c.types.get(t)!.version, a.types.get(t)!.version, `${t} unchanged on toggle`);

  const rebuilt = inputs();
  rebuilt.filters = rebuilt.filters.map((f) => (f.name === "add-header" ? { ...f, sha256: "c".repeat(64) } : f));
  const d = encodeSnapshot(buildResources(rebuilt));
  assert.notEqual(d.types.get(EXTENSION_CONFIG)!.version, a.types.get(EXTENSION_CONFIG)!.version);
  assert.equal(d.types.get(EXTENSION_CONFIG)!.resources.get("second")!.version, a.types.get(EXTENSION_CONFIG)!.resources.get("second")!.version);
  for (const t of [CLUSTER, LISTENER, ROUTE]) assert.equal(d.types.get(t)!.version, a.types.get(t)!.version, `${t} unchanged on rebuild`);
});

function normalise(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, normalise(x)]));
  }
  // Envoy's protos carry 64-bit ints as strings once decoded; compare numbers by value.
  return typeof v === "number" ? String(v) : v;
}

/** The decoded PluginConfig of one filter's ECDS resource, as Envoy would read it off the wire. */
function pluginConfigOf(filters: ResourceInputs["filters"], name: string): any { // any: the tests drill into a decoded tree
  const ecds = buildResources(inputs({ filters })).get(EXTENSION_CONFIG)!;
  const any = toAny(EXTENSION_CONFIG, plain(ecds.get(name)));
  return (decodeMessage(EXTENSION_CONFIG, any.value) as any).typed_config.config;
}

test("failure_policy (Envoy 1.40's field 7) carries the fail policy; the deprecated fail_open is never sent", () => {
  const base = { name: "f", sha256: SHA_A, rootId: "f", enabled: true } as const;
  const cases = [[undefined, "FAIL_RELOAD"], ["closed", "FAIL_CLOSED"], ["open", "FAIL_OPEN"], ["reload", "FAIL_RELOAD"]] as const;
  for (const [policy, expected] of cases) {
    const plugin = pluginConfigOf([{ ...base, ...(policy ? { failurePolicy: policy } : {}) }], "f");
    assert.equal(plugin.failure_policy, expected, `${policy}`);
    assert.equal(plugin.fail_open, undefined, "Envoy rejects fail_open together with failure_policy");
  }
  // On the wire: field 7, varint (tag 0x38), value 1 for FAIL_RELOAD.
  const bytes = encodeMessage("envoy.extensions.wasm.v3.PluginConfig", { name: "x", failure_policy: "FAIL_RELOAD" });
  assert.deepEqual([...bytes], [0x0a, 0x01, 0x78, 0x38, 0x01]);
  // reload_config (field 8) is known to the codec too.
  assert.doesNotThrow(() => encodeMessage("envoy.extensions.wasm.v3.PluginConfig", { reload_config: { backoff: { base_interval: { seconds: 1 } } } }));
});

test("allowed_capabilities is never empty (empty = everything allowed) and is exactly the granted set", () => {
  const granted = ["proxy_log", "proxy_on_request_headers", "proxy_http_call"];
  const plugin = pluginConfigOf([{ name: "f", sha256: SHA_A, rootId: "f", enabled: true, allowedCapabilities: granted }], "f");
  assert.deepEqual(Object.keys(plugin.capability_restriction_config.allowed_capabilities).sort(), [...granted].sort());
  for (const v of Object.values(plugin.capability_restriction_config.allowed_capabilities)) assert.deepEqual(v, {});
  // Without a granted set: the base set and every callback, still a restriction.
  const fallback = pluginConfigOf([{ name: "f", sha256: SHA_A, rootId: "f", enabled: true }], "f");
  const keys = Object.keys(fallback.capability_restriction_config.allowed_capabilities);
  assert.ok(keys.includes("proxy_log") && keys.includes("proxy_on_request_headers"));
  assert.ok(!keys.includes("proxy_http_call"));
  const empty = pluginConfigOf([{ name: "f", sha256: SHA_A, rootId: "f", enabled: true, allowedCapabilities: [] }], "f");
  assert.deepEqual(Object.keys(empty.capability_restriction_config.allowed_capabilities).sort(), keys.sort());
});

test("the vm_id follows the granted set: Envoy fixes capabilities per VM and keys VMs by (vm_id, config, code)", () => {
  const spec = { name: "f", sha256: SHA_A, rootId: "f", enabled: true } as const;
  const a = pluginConfigOf([{ ...spec, allowedCapabilities: ["proxy_log", "proxy_on_request_headers"] }], "f").vm_config.vm_id;
  const sameSetOtherOrder = pluginConfigOf([{ ...spec, allowedCapabilities: ["proxy_on_request_headers", "proxy_log"] }], "f").vm_config.vm_id;
  const b = pluginConfigOf([{ ...spec, allowedCapabilities: ["proxy_log", "proxy_on_request_headers", "proxy_http_call"] }], "f").vm_config.vm_id;
  assert.match(a, /^f\.caps-[0-9a-f]{12}$/);
  assert.equal(a, sameSetOtherOrder);
  assert.notEqual(a, b);
  const policyOnly = pluginConfigOf([{ ...spec, allowedCapabilities: ["proxy_log", "proxy_on_request_headers"], failurePolicy: "reload" }], "f").vm_config.vm_id;
  assert.equal(policyOnly, a, "a fail policy change keeps the VM");
});
