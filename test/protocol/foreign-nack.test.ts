// What one client's NACKs change for the others (issue 10, item 1), over real gRPC streams.
// Seen before: a non-Envoy client subscribed to LDS and CDS, NACKed each response once and left;
// every Envoy that connected afterwards was sent an empty listener and cluster list, which SotW
// reads as "delete everything".
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { CLUSTER, LISTENER } from "../../controlplane/xds/type-urls.ts";
import { namesOf, nodeOf, sotwAck, sotwNack, startXds, type XdsHarness } from "../support/xds-client.ts";

describe("a foreign client's NACKs", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  afterEach(() => h.reset());
  after(() => h.close());

  it("never leave a later Envoy without listeners or clusters (SotW and Delta)", async () => {
    const foreign = h.connect().sotw();
    foreign.send({ node: nodeOf("foreign"), type_url: LISTENER, resource_names: [] });
    const lds = await foreign.nextOf(LISTENER);
    foreign.send({ type_url: CLUSTER, resource_names: [] });
    const cds = await foreign.nextOf(CLUSTER);
    foreign.send(sotwNack(lds, "rejected by a foreign client"));
    foreign.send(sotwNack(cds, "rejected by a foreign client"));
    await h.typeStatus("foreign", CLUSTER, (t) => t.lastNack !== undefined, "the CDS NACK recorded");
    foreign.cancel();

    const sotw = h.connect().sotw();
    sotw.send({ node: nodeOf("envoy-later"), type_url: CLUSTER, resource_names: [] });
    const clusters = await sotw.nextOf(CLUSTER);
    sotw.send({ type_url: LISTENER, resource_names: [] });
    const listeners = await sotw.nextOf(LISTENER);
    assert.deepEqual(namesOf(clusters).sort(), namesOf(cds).sort(), "every cluster");
    assert.deepEqual(namesOf(listeners), namesOf(lds), "the listener");
    sotw.send(sotwAck(clusters));
    sotw.send(sotwAck(listeners));

    const delta = h.connect().delta();
    delta.send({ node: nodeOf("envoy-delta"), type_url: LISTENER, resource_names_subscribe: [] });
    const d = await delta.nextOf(LISTENER);
    assert.deepEqual(d.resources.map((r) => r.name), namesOf(lds), "Delta: the listener too");
  });

  it("do not decide for another node group's Envoys", async () => {
    // Groups follow node.cluster here, as targeting makes them in the control plane.
    h.cache.setPolicy({ groupOf: (node) => node.cluster, build: () => h.cache.get()! });
    const foreign = h.connect().sotw();
    foreign.send({ node: { id: "foreign", cluster: "elsewhere" }, type_url: LISTENER, resource_names: [] });
    foreign.send(sotwNack(await foreign.nextOf(LISTENER), "no"));
    await h.typeStatus("foreign", LISTENER, (t) => t.lastNack !== undefined, "the LDS NACK recorded");
    assert.ok(h.cache.rejectionsFor(() => "elsewhere").isRejected(LISTENER, "wasm_listener", h.cache.get()!.types.get(LISTENER)!.resources.get("wasm_listener")!.version));
    assert.equal(h.cache.rejectionsFor(() => nodeOf("x").cluster).isRejected(LISTENER, "wasm_listener", h.cache.get()!.types.get(LISTENER)!.resources.get("wasm_listener")!.version), false);
  });
});
