// Client cancel and half-close: the server drops the stream from the ClientRegistry and stays
// up for the next stream, for SotW and Delta, over ADS and a per-type service.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { waitFor } from "../support/wait.ts";
import { CLUSTER, LISTENER } from "../../controlplane/xds/type-urls.ts";
import { nodeOf, snapshotOf, startXds, type DeltaStream, type ServiceKey, type SotwStream, type XdsHarness } from "../support/xds-client.ts";

describe("stream lifecycle", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds();
  });
  afterEach(() => h.reset());
  after(() => h.close());

  const gone = (node: string) =>
    waitFor(() => h.streamsOf(node).length === 0, { what: `the server to drop ${node}'s stream from the ClientRegistry`, timeoutMs: 3000, intervalMs: 5 });

  /** Opens a stream for `node`, gets one response, and checks the registry lists it. */
  async function openSotw(key: ServiceKey, node: string, typeUrl: string): Promise<SotwStream> {
    const s = h.connect().sotw(key);
    s.send({ node: nodeOf(node), type_url: typeUrl, resource_names: [] });
    await s.nextOf(typeUrl);
    assert.equal(h.streamsOf(node).length, 1);
    return s;
  }

  async function openDelta(key: ServiceKey, node: string, typeUrl: string): Promise<DeltaStream> {
    const s = h.connect().delta(key);
    s.send({ node: nodeOf(node), type_url: typeUrl, resource_names_subscribe: ["*"] });
    await s.nextOf(typeUrl);
    assert.equal(h.streamsOf(node).length, 1);
    return s;
  }

  /** The server is still serving: a new stream for `node` is answered and registered. */
  async function serverSurvives(node: string): Promise<void> {
    // A snapshot change with no stream left to watch it must not disturb anything either.
    h.cache.set(snapshotOf({ listenerPort: 10001 }));
    const s = h.connect().sotw();
    s.send({ node: nodeOf(node), type_url: LISTENER, resource_names: [] });
    const r = await s.nextOf(LISTENER, "the answer on a new stream");
    assert.equal(r.version_info, h.cache.get()!.types.get(LISTENER)!.version);
    assert.equal(h.streamsOf(node).length, 1);
  }

  it("SotW ADS: a client cancel removes the stream from the registry", async () => {
    const s = await openSotw("ads", "sotw-cancel", CLUSTER);
    s.cancel();
    await gone("sotw-cancel");
    assert.equal((await s.ended()).code, grpc.status.CANCELLED);
    await serverSurvives("sotw-cancel");
  });

  it("SotW ADS: a half-close removes the stream and the server ends it with OK", async () => {
    const s = await openSotw("ads", "sotw-end", CLUSTER);
    s.end();
    await gone("sotw-end");
    const status = await s.ended();
    assert.equal(status.code, grpc.status.OK, status.details);
    await serverSurvives("sotw-end");
  });

  it("Delta ADS: a client cancel removes the stream from the registry", async () => {
    const s = await openDelta("ads", "delta-cancel", CLUSTER);
    s.cancel();
    await gone("delta-cancel");
    await serverSurvives("delta-cancel");
  });

  it("Delta ADS: a half-close removes the stream and the server ends it with OK", async () => {
    const s = await openDelta("ads", "delta-end", CLUSTER);
    s.end();
    await gone("delta-end");
    const status = await s.ended();
    assert.equal(status.code, grpc.status.OK, status.details);
    await serverSurvives("delta-end");
  });

  it("per-type StreamListeners and DeltaClusters: cancel and half-close remove their streams", async () => {
    const lds = await openSotw("lds", "lds-cancel", LISTENER);
    lds.cancel();
    await gone("lds-cancel");
    const cds = await openDelta("cds", "cds-end", CLUSTER);
    cds.end();
    await gone("cds-end");
    assert.equal((await cds.ended()).code, grpc.status.OK);
    await serverSurvives("per-type-after");
  });

  it("a stream ended by a protocol error leaves the registry and the server serves on", async () => {
    const s = await openSotw("ads", "protocol-error", CLUSTER);
    s.send({ type_url: "type.googleapis.com/nope.Nope", resource_names: [] });
    assert.equal((await s.ended()).code, grpc.status.INVALID_ARGUMENT);
    await gone("protocol-error");
    await serverSurvives("protocol-error");
  });
});
