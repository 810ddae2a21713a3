// The ECDS code-cache-miss path (controlplane/xds/ecds-delivery.ts), end to end over gRPC:
// a filter Envoy already runs gets a new module with nack_on_code_cache_miss true; Envoy NACKs,
// downloads the module (the module server reports it to the FetchTracker), and the same
// version is re-sent, still with the flag (a failed fetch must stay a NACK), on a URL that differs.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { CLUSTER, EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import {
  decodeAny,
  deltaAck,
  deltaNack,
  filterSpec,
  nackOnCacheMiss,
  nodeOf,
  sha,
  snapshotOf,
  sotwAck,
  sotwNack,
  startXds,
  type XdsHarness,
} from "../support/xds-client.ts";

/** The module URL of a decoded TypedExtensionConfig (names the node whose download it is). */
function moduleUri(any: Parameters<typeof decodeAny>[0]): string {
  const d = decodeAny(any) as { typed_config: { config: { vm_config: { code: { remote: { http_uri: { uri: string } } } } } } };
  return d.typed_config.config.vm_config.code.remote.http_uri.uri;
}

const CACHE_MISS = "Failed to load Wasm module due to a missing remote code cache entry";

describe("ECDS code-cache miss", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  afterEach(() => h.reset());
  after(() => h.close());

  it("SotW: after an ACK, a new module is sent with the flag; NACK, fetch, and the same version comes back on a new URL", async () => {
    const node = "sotw-miss";
    const s = h.connect().sotw();
    s.send({ node: nodeOf(node), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    const first = await s.nextOf(EXTENSION_CONFIG);
    assert.equal(nackOnCacheMiss(first.resources[0]!), false, "warming: Envoy fetches through its init manager");
    s.send(sotwAck(first, ["f1"]));
    await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === first.version_info, "the ECDS ACK");

    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "c"), filterSpec("f2", "b")] }));
    const update = await s.nextOf(EXTENSION_CONFIG, "the new module");
    assert.notEqual(update.version_info, first.version_info);
    assert.equal(nackOnCacheMiss(update.resources[0]!), true, "an update of a running filter: NACK on a cache miss");
    assert.match(moduleUri(update.resources[0]!), new RegExp(`/modules/${sha("c")}\\.wasm\\?node=${node}$`));

    s.send(sotwNack(update, CACHE_MISS, ["f1"], first.version_info));
    // Sync point: once the CDS answer is here the server has handled the NACK (same stream, in order).
    s.send({ type_url: CLUSTER, resource_names: [] });
    await s.nextOf(CLUSTER, "CDS, with nothing for ECDS before it (the re-send waits for the download)");

    h.fetches.started(node, sha("c"));
    h.fetches.completed(node, sha("c"));
    const resent = await s.nextOf(EXTENSION_CONFIG, "the re-send after the download");
    assert.equal(resent.version_info, update.version_info, "the same version");
    assert.notEqual(resent.nonce, update.nonce);
    assert.equal(nackOnCacheMiss(resent.resources[0]!), true, "still with the flag: a failed fetch is a NACK, not a filter without code");
    assert.match(moduleUri(resent.resources[0]!), new RegExp(`/modules/${sha("c")}\\.wasm\\?node=[^&]+&fetched=1$`), "a URL that differs from the rejected config's");

    s.send(sotwAck(resent, ["f1"]));
    const st = await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === update.version_info, "the ACK of the re-send");
    assert.equal(st.lastNack, undefined, "a cache miss is not reported as a rejection");
    assert.equal(h.streamsOf(node)[0]!.cacheMissResends, 1);
  });

  it("SotW: a NACK of the re-send (the fetched bytes did not match the sha256) is a real rejection", async () => {
    const node = "sotw-bad-fetch";
    const s = h.connect().sotw();
    s.send({ node: nodeOf(node), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    const first = await s.nextOf(EXTENSION_CONFIG);
    s.send(sotwAck(first, ["f1"]));
    await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === first.version_info, "the ECDS ACK");
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "e"), filterSpec("f2", "b")] }));
    const update = await s.nextOf(EXTENSION_CONFIG, "the new module");
    s.send(sotwNack(update, CACHE_MISS, ["f1"], first.version_info));
    h.fetches.started(node, sha("e"));
    h.fetches.completed(node, sha("e"));
    const resent = await s.nextOf(EXTENSION_CONFIG, "the re-send after the download");
    const mismatch = "Failed to load Wasm code (fetch failed) from remote";
    s.send(sotwNack(resent, mismatch, ["f1"], first.version_info));
    const st = await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.lastNack !== undefined, "the rejection recorded");
    assert.match(st.lastNack?.message ?? "", /fetch failed/);
    assert.equal(st.ackedVersion, first.version_info, "Envoy keeps the old module");
  });

  it("Delta: after an ACK, a new module is sent with the flag; NACK, fetch, and the same resource version comes back on a new URL", async () => {
    const node = "delta-miss";
    const d = h.connect().delta();
    d.send({ node: nodeOf(node), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    const first = await d.nextOf(EXTENSION_CONFIG);
    assert.equal(nackOnCacheMiss(first.resources[0]!.resource), false, "warming");
    d.send(deltaAck(first));
    await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === first.system_version_info, "the ECDS ACK");

    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "d"), filterSpec("f2", "b")] }));
    const update = await d.nextOf(EXTENSION_CONFIG, "the new module");
    assert.deepEqual(update.resources.map((r) => r.name), ["f1"]);
    const f1 = update.resources[0]!;
    assert.equal(f1.version, h.cache.get()!.types.get(EXTENSION_CONFIG)!.resources.get("f1")!.version);
    assert.notEqual(f1.version, first.resources[0]!.version);
    assert.equal(nackOnCacheMiss(f1.resource), true);

    d.send(deltaNack(update, CACHE_MISS));
    d.send({ type_url: CLUSTER, resource_names_subscribe: ["*"] });
    await d.nextOf(CLUSTER, "CDS (sync point), with nothing for ECDS before it");

    h.fetches.started(node, sha("d"));
    h.fetches.completed(node, sha("d"));
    const resent = await d.nextOf(EXTENSION_CONFIG, "the re-send after the download");
    assert.deepEqual(resent.resources.map((r) => r.name), ["f1"]);
    assert.equal(resent.resources[0]!.version, f1.version, "the same resource version");
    assert.equal(resent.system_version_info, update.system_version_info);
    assert.equal(nackOnCacheMiss(resent.resources[0]!.resource), true);
    assert.match(moduleUri(resent.resources[0]!.resource), /&fetched=1$/);

    d.send(deltaAck(resent));
    const st = await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === update.system_version_info, "the ACK of the re-send");
    assert.equal(st.lastNack, undefined, "a cache miss is not reported as a rejection");
    assert.equal(h.streamsOf(node)[0]!.cacheMissResends, 1);
  });

  it("SotW: a push held back while Envoy downloads its module waits for the download, not for the next ACK", async () => {
    const node = "sotw-deferred";
    const s = h.connect().sotw();
    s.send({ node: nodeOf(node), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    const first = await s.nextOf(EXTENSION_CONFIG);
    h.fetches.started(node, sha("y"));
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "y"), filterSpec("f2", "b")] }));
    // Every SotW ACK asks for what is current: it must not announce the module being downloaded.
    s.send(sotwAck(first, ["f1"]));
    await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === first.version_info, "the ECDS ACK");
    s.send({ type_url: CLUSTER, resource_names: [] });
    await s.nextOf(CLUSTER, "CDS (sync point), with nothing for ECDS before it");

    h.fetches.completed(node, sha("y"));
    const update = await s.nextOf(EXTENSION_CONFIG, "the held-back push, once the download ended");
    assert.notEqual(update.version_info, first.version_info);
    assert.match(moduleUri(update.resources[0]!), new RegExp(`/modules/${sha("y")}\\.wasm\\?node=${node}`));
  });

  it("Delta: a push held back while Envoy downloads its module waits for the download, not for the next ACK", async () => {
    const node = "delta-deferred";
    const d = h.connect().delta();
    d.send({ node: nodeOf(node), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    const first = await d.nextOf(EXTENSION_CONFIG);
    // Envoy is downloading module "x" (started by an earlier config) when a snapshot names it.
    h.fetches.started(node, sha("x"));
    h.cache.set(snapshotOf({ filters: [filterSpec("f1", "x"), filterSpec("f2", "b")] }));
    // The ACK of the first response arrives while the push is held back: announcing a module still
    // being downloaded is a crash path in Envoy's code cache (ecds-delivery.ts), so nothing goes out.
    d.send(deltaAck(first));
    await h.typeStatus(node, EXTENSION_CONFIG, (x) => x.ackedVersion === first.system_version_info, "the ECDS ACK");
    d.send({ type_url: CLUSTER, resource_names_subscribe: ["*"] });
    await d.nextOf(CLUSTER, "CDS (sync point), with nothing for ECDS before it");

    h.fetches.completed(node, sha("x"));
    const update = await d.nextOf(EXTENSION_CONFIG, "the held-back push, once the download ended");
    assert.deepEqual(update.resources.map((r) => r.name), ["f1"]);
    assert.match(moduleUri(update.resources[0]!.resource), new RegExp(`/modules/${sha("x")}\\.wasm\\?node=${node}`));
  });
});
