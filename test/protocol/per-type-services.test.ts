// The per-type discovery services (LDS/RDS/CDS/EDS/ECDS), SotW, Delta and unary Fetch: each
// serves only its own type, and resources that refer to other resources name the source the
// Envoy connected with (api_config_source GRPC / DELTA_GRPC instead of ads).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE } from "../../controlplane/xds/type-urls.ts";
import type { ResourceObject } from "../../controlplane/xds/codec.ts";
import { decodeAny, namesOf, nodeOf, startXds, type XdsHarness } from "../support/xds-client.ts";

interface ConfigSource {
  ads?: object;
  api_config_source?: { api_type?: string; transport_api_version?: string; grpc_services?: { envoy_grpc?: { cluster_name?: string } }[] };
  resource_api_version?: string;
}

interface DecodedListener {
  filter_chains: {
    filters: {
      typed_config: {
        rds: { route_config_name: string; config_source: ConfigSource };
        http_filters: { name: string; config_discovery?: { config_source: ConfigSource } }[];
      };
    }[];
  }[];
}

/** Every config source a listener refers to: its RDS source, then each filter's ECDS source. */
function listenerSources(l: ResourceObject): ConfigSource[] {
  const hcm = (l as unknown as DecodedListener).filter_chains[0]!.filters[0]!.typed_config;
  const ecds = hcm.http_filters.flatMap((f) => (f.config_discovery ? [f.config_discovery.config_source] : []));
  assert.equal(ecds.length, 2, "one ECDS slot per filter");
  return [hcm.rds.config_source, ...ecds];
}

function assertApiSource(sources: ConfigSource[], apiType: string): void {
  for (const s of sources) {
    assert.equal(s.ads, undefined, "not ads");
    assert.equal(s.api_config_source?.api_type, apiType);
    assert.equal(s.api_config_source?.transport_api_version, "V3");
    assert.equal(s.api_config_source?.grpc_services?.[0]?.envoy_grpc?.cluster_name, "xds_cluster");
    assert.equal(s.resource_api_version, "V3");
  }
}

function edsSources(clusters: ResourceObject[]): ConfigSource[] {
  return clusters.map((c) => (c as { eds_cluster_config: { eds_config: ConfigSource } }).eds_cluster_config.eds_config);
}

describe("per-type discovery services", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  // Each test closes its clients and the server drops their streams before the next one starts.
  afterEach(() => h.reset());
  after(() => h.close());

  it("StreamListeners rejects a CDS request with INVALID_ARGUMENT", async () => {
    const s = h.connect().sotw("lds");
    s.send({ node: nodeOf("lds-cds"), type_url: CLUSTER, resource_names: [] });
    const status = await s.ended();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
    assert.deepEqual(s.received, []);
    assert.deepEqual(h.streamsOf("lds-cds"), []);
  });

  it("each SotW per-type service accepts only its own type", async () => {
    const client = h.connect();
    const cases: ["lds" | "rds" | "cds" | "eds" | "ecds", string, string, string[]][] = [
      ["rds", ROUTE, LISTENER, ["local_route"]],
      ["cds", CLUSTER, ROUTE, []],
      ["eds", ENDPOINT, CLUSTER, ["upstream"]],
      ["ecds", EXTENSION_CONFIG, ENDPOINT, ["f1"]],
    ];
    for (const [key, own, other, names] of cases) {
      const ok = client.sotw(key);
      ok.send({ node: nodeOf(`${key}-own`), type_url: own, resource_names: names });
      const r = await ok.nextOf(own, `${key} answering its own type`);
      assert.ok(r.resources.length > 0);
      const bad = client.sotw(key);
      bad.send({ node: nodeOf(`${key}-other`), type_url: other, resource_names: [] });
      const status = await bad.ended();
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, `${key} given ${other}: ${status.details}`);
    }
  });

  it("StreamListeners returns a listener whose RDS and ECDS sources are api_config_source GRPC", async () => {
    const s = h.connect().sotw("lds");
    s.send({ node: nodeOf("lds-grpc"), type_url: LISTENER, resource_names: [] });
    const r = await s.nextOf(LISTENER);
    assert.equal(r.resources.length, 1);
    assertApiSource(listenerSources(decodeAny(r.resources[0]!)), "GRPC");
    // The version is the canonical one, whatever the rendering.
    assert.equal(r.version_info, h.cache.get()!.types.get(LISTENER)!.version);
  });

  it("StreamClusters returns clusters whose EDS source is api_config_source GRPC", async () => {
    const s = h.connect().sotw("cds");
    s.send({ node: nodeOf("cds-grpc"), type_url: CLUSTER, resource_names: [] });
    const r = await s.nextOf(CLUSTER);
    assertApiSource(edsSources(r.resources.map(decodeAny)), "GRPC");
  });

  it("DeltaListeners and DeltaClusters name DELTA_GRPC sources", async () => {
    const client = h.connect();
    const lds = client.delta("lds");
    lds.send({ node: nodeOf("delta-lds"), type_url: LISTENER, resource_names_subscribe: [] });
    const l = await lds.nextOf(LISTENER);
    assert.equal(l.resources.length, 1);
    assertApiSource(listenerSources(decodeAny(l.resources[0]!.resource)), "DELTA_GRPC");

    const cds = client.delta("cds");
    cds.send({ node: nodeOf("delta-cds"), type_url: CLUSTER, resource_names_subscribe: ["*"] });
    const c = await cds.nextOf(CLUSTER);
    assertApiSource(edsSources(c.resources.map((x) => decodeAny(x.resource))), "DELTA_GRPC");
  });

  it("DeltaListeners rejects a CDS request with INVALID_ARGUMENT", async () => {
    const s = h.connect().delta("lds");
    s.send({ node: nodeOf("delta-lds-cds"), type_url: CLUSTER, resource_names_subscribe: [] });
    const status = await s.ended();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
  });

  it("ADS names ads sources (the contrast)", async () => {
    const s = h.connect().sotw("ads");
    s.send({ node: nodeOf("ads-src"), type_url: LISTENER, resource_names: [] });
    const r = await s.nextOf(LISTENER);
    for (const src of listenerSources(decodeAny(r.resources[0]!))) {
      assert.deepEqual(src.ads, {});
      assert.equal(src.api_config_source, undefined);
    }
  });

  it("FetchClusters (unary) returns the clusters; a foreign type is INVALID_ARGUMENT", async () => {
    const client = h.connect();
    const r = await client.fetch("cds", { node: nodeOf("fetch"), type_url: CLUSTER });
    assert.equal(r.type_url, CLUSTER);
    assert.equal(r.version_info, h.cache.get()!.types.get(CLUSTER)!.version);
    assert.deepEqual(namesOf(r).sort(), ["upstream", "wasm_modules"]);
    assertApiSource(edsSources(r.resources.map(decodeAny)), "GRPC");
    // No type_url: the service's own type.
    const implicit = await client.fetch("cds", { node: nodeOf("fetch") });
    assert.deepEqual(namesOf(implicit).sort(), ["upstream", "wasm_modules"]);
    // By name.
    const one = await client.fetch("cds", { node: nodeOf("fetch"), type_url: CLUSTER, resource_names: ["wasm_modules"] });
    assert.deepEqual(namesOf(one), ["wasm_modules"]);
    await assert.rejects(client.fetch("cds", { node: nodeOf("fetch"), type_url: LISTENER }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  });
});
