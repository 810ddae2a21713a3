// The module cluster when the module server speaks HTTPS (CP_TLS_CERT): an UpstreamTlsContext
// that trusts CP_MODULE_TLS_CA_FOR_ENVOY and checks the module host, https module URLs, strict
// encoding through Envoy's protos, and content-hashed versions that stay deterministic.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeMessage, encodeMessage, type ResourceObject } from "../../../controlplane/xds/codec.ts";
import {
  buildResources, isVariantResource, MODULE_CLUSTER, UPSTREAM_CLUSTER,
  type ConfigSourceKind, type ResourceInputs, type VariantResource,
} from "../../../controlplane/xds/resources.ts";
import { encodeSnapshot } from "../../../controlplane/xds/snapshot.ts";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../../controlplane/xds/type-urls.ts";

const SHA = "c".repeat(64);
const CA = "/etc/envoy/wasm-xds-ca.pem";
const TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SOURCES: ConfigSourceKind[] = ["ads", "grpc", "delta_grpc"];

function inputs(moduleHost: string, tls: boolean, caFile = CA): ResourceInputs {
  const i: ResourceInputs = {
    listener: { address: "127.0.0.1", port: 10000 },
    upstream: { host: "echo", port: 8080 },
    moduleServer: { host: moduleHost, port: 18080 },
    filters: [{ name: "add-header", sha256: SHA, rootId: "add-header", enabled: true }],
  };
  if (tls) i.moduleTls = { caFile, sni: moduleHost };
  return i;
}

function variant(r: ResourceObject | VariantResource | undefined): VariantResource {
  assert.ok(r && isVariantResource(r), "a per-source resource");
  return r;
}

/** The cluster as Envoy decodes it, for one way of connecting, encoded with the strict check. */
function decodedCluster(i: ResourceInputs, name: string, source: ConfigSourceKind): ResourceObject {
  const obj = variant(buildResources(i).get(CLUSTER)!.get(name)).render({ nodeId: "n", nackOnCacheMiss: false, source });
  return decodeMessage(CLUSTER, encodeMessage(CLUSTER, obj));
}

interface DecodedTls {
  sni?: string;
  common_tls_context: { validation_context: { trusted_ca: { filename: string }; match_typed_subject_alt_names: { san_type: string; matcher: { exact: string } }[] } };
}

function tlsOf(cluster: ResourceObject): DecodedTls {
  const socket = cluster.transport_socket as { name: string; typed_config: { "@type": string } & DecodedTls };
  assert.equal(socket.name, "envoy.transport_sockets.tls");
  assert.equal(socket.typed_config["@type"], TLS_CONTEXT);
  return socket.typed_config;
}

function moduleUri(i: ResourceInputs): string {
  const ecds = variant(buildResources(i).get(EXTENSION_CONFIG)!.get("add-header"));
  const decoded = decodeMessage(EXTENSION_CONFIG, encodeMessage(EXTENSION_CONFIG, ecds.render({ nodeId: "envoy-1", nackOnCacheMiss: true, source: "ads" }))) as {
    typed_config: { config: { vm_config: { code: { remote: { http_uri: { uri: string; cluster: string } } } } } };
  };
  return decoded.typed_config.config.vm_config.code.remote.http_uri.uri;
}

test("without moduleTls: no transport socket, http module URLs (unchanged behaviour)", () => {
  const i = inputs("127.0.0.1", false);
  for (const source of SOURCES) {
    assert.equal(decodedCluster(i, MODULE_CLUSTER, source).transport_socket, undefined);
  }
  assert.equal(moduleUri(i), `http://127.0.0.1:18080/modules/${SHA}.wasm?node=envoy-1`);
});

test("an IP module host: TLS with the CA file, an IP SAN check and no SNI, for every source kind", () => {
  const i = inputs("127.0.0.1", true);
  for (const source of SOURCES) {
    const cluster = decodedCluster(i, MODULE_CLUSTER, source);
    assert.equal(cluster.type, "EDS", "an IP stays an EDS cluster");
    const tls = tlsOf(cluster);
    assert.equal(tls.common_tls_context.validation_context.trusted_ca.filename, CA);
    assert.deepEqual(tls.common_tls_context.validation_context.match_typed_subject_alt_names, [{ san_type: "IP_ADDRESS", matcher: { exact: "127.0.0.1" } }]);
    assert.equal(tls.sni, undefined, "RFC 6066: no IP literal as SNI");
    // Only the module cluster speaks TLS; the upstream is the operator's own business.
    assert.equal(decodedCluster(i, UPSTREAM_CLUSTER, source).transport_socket, undefined, source);
  }
  assert.equal(moduleUri(i), `https://127.0.0.1:18080/modules/${SHA}.wasm?node=envoy-1`);
});

test("a DNS module host: SNI and a DNS SAN check on a STRICT_DNS cluster", () => {
  const i = inputs("modules.example.internal", true);
  for (const source of SOURCES) {
    const cluster = decodedCluster(i, MODULE_CLUSTER, source);
    assert.equal(cluster.type, "STRICT_DNS");
    const tls = tlsOf(cluster);
    assert.equal(tls.sni, "modules.example.internal");
    assert.deepEqual(tls.common_tls_context.validation_context.match_typed_subject_alt_names, [{ san_type: "DNS", matcher: { exact: "modules.example.internal" } }]);
  }
  assert.equal(moduleUri(i), `https://modules.example.internal:18080/modules/${SHA}.wasm?node=envoy-1`);
});

test("the whole snapshot encodes with the strict check (UpstreamTlsContext's protos are loaded)", () => {
  for (const host of ["127.0.0.1", "::1", "modules.example.internal"]) {
    const snapshot = encodeSnapshot(buildResources(inputs(host, true)));
    assert.deepEqual([...snapshot.types.keys()].sort(), [CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE].sort());
  }
  // The strict walk reaches inside the transport socket's Any: a typo is an error, not a drop.
  const cluster = variant(buildResources(inputs("127.0.0.1", true)).get(CLUSTER)!.get(MODULE_CLUSTER)).canonical;
  const socket = cluster.transport_socket as { typed_config: ResourceObject };
  const typo = { ...cluster, transport_socket: { ...socket, typed_config: { ...socket.typed_config, snii: "x" } } };
  assert.throws(() => encodeMessage(CLUSTER, typo), /snii: no such field in envoy\.extensions\.transport_sockets\.tls\.v3\.UpstreamTlsContext/);
});

test("versions are deterministic and move only where TLS shows", () => {
  const plain = encodeSnapshot(buildResources(inputs("127.0.0.1", false)));
  const a = encodeSnapshot(buildResources(inputs("127.0.0.1", true)));
  const b = encodeSnapshot(buildResources(inputs("127.0.0.1", true)));
  const otherCa = encodeSnapshot(buildResources(inputs("127.0.0.1", true, "/other/ca.pem")));
  const version = (s: typeof a, t: string) => s.types.get(t)!.version;
  for (const t of [CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE]) {
    assert.equal(version(a, t), version(b, t), `same inputs, same ${t} version (replicas agree)`);
  }
  // TLS on: the clusters (transport socket) and ECDS (https URL) change; nothing else does.
  assert.notEqual(version(plain, CLUSTER), version(a, CLUSTER));
  assert.notEqual(version(plain, EXTENSION_CONFIG), version(a, EXTENSION_CONFIG));
  for (const t of [ENDPOINT, LISTENER, ROUTE]) assert.equal(version(plain, t), version(a, t), t);
  // Another CA file changes only the module cluster.
  assert.notEqual(version(a, CLUSTER), version(otherCa, CLUSTER));
  assert.equal(a.types.get(CLUSTER)!.resources.get(UPSTREAM_CLUSTER)!.version, otherCa.types.get(CLUSTER)!.resources.get(UPSTREAM_CLUSTER)!.version);
  for (const t of [ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE]) assert.equal(version(a, t), version(otherCa, t), t);
});
