// A peer that never reads its responses cannot make the control plane buffer without bound
// (issue 10, item 7). Seen before: 100 HTTP/2 clients that never read and 80 changes carrying a
// 60 KB configuration grew the process from 378 to 805 MB, linearly. Now a stream with too much
// queued is reset (and counted); a client that reads keeps up through the same changes.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import type { DiscoveryRequest } from "../../controlplane/xds/discovery-types.ts";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import { DEFAULT_WRITE_LIMITS } from "../../controlplane/xds/write-budget.ts";
import { adsClientConstructor } from "../../bench/support/sim-envoy.ts";
import { filterSpec, nodeOf, snapshotOf, sotwAck, startXds, type XdsHarness } from "../support/xds-client.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG_BYTES = 60 * 1024;
/** More changes than the budget lets a non-reader queue, with room to spare; bounded. */
const CHANGES = DEFAULT_WRITE_LIMITS.maxQueuedResponses * 3;

const bigFilter = (i: number) => ({ ...filterSpec("f1", "a"), configuration: `${i}:`.padEnd(CONFIG_BYTES, "x") });

/** A gRPC message frame: flag byte, big-endian length, the message. */
function frame(req: DiscoveryRequest): Buffer {
  const method = (adsClientConstructor() as unknown as { service: Record<string, { requestSerialize(r: unknown): Buffer }> })
    .service.StreamAggregatedResources!;
  const body = method.requestSerialize(req);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

describe("xDS write backpressure", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds(snapshotOf({ filters: [bigFilter(0)] }));
  });
  after(() => h.close());

  it("resets a stream that does not read, counts it, and keeps serving one that does", { timeout: 60_000 }, async () => {
    // The non-reader: raw HTTP/2, one ECDS subscription, then never a byte consumed.
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    session.on("error", () => undefined);
    const slow = session.request({
      ":method": "POST",
      ":path": "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
      "content-type": "application/grpc",
      te: "trailers",
    });
    slow.on("error", () => undefined);
    let rstCode: number | undefined;
    slow.on("close", () => (rstCode = slow.rstCode));
    slow.pause();
    slow.write(frame({ node: nodeOf("slow"), type_url: EXTENSION_CONFIG, resource_names: ["f1"] }));

    // The reader: a grpc client that ACKs what it gets.
    const reader = h.connect().sotw();
    reader.send({ node: nodeOf("reader"), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    reader.send(sotwAck(await reader.nextOf(EXTENSION_CONFIG), ["f1"]));
    await waitFor(() => h.streamsOf("slow").length === 1, { what: "the non-reader's stream to register", timeoutMs: 5000 });

    try {
      for (let i = 1; i <= CHANGES && h.streamsOf("slow").length > 0; i++) {
        h.cache.set(snapshotOf({ filters: [bigFilter(i)] }));
        // Let the writes reach the socket between changes, as real changes are spaced.
        await new Promise((resolve) => setImmediate(resolve));
      }
      await waitFor(() => h.streamsOf("slow").length === 0, {
        what: "the non-reader's stream to be dropped",
        timeoutMs: 10_000,
        details: () => `slow streams reset: ${h.clients.slowStreamsClosed}`,
      });
      assert.equal(h.clients.slowStreamsClosed, 1, "one slow stream reset and counted");
      await waitFor(() => rstCode !== undefined, { what: "the HTTP/2 stream to be reset", timeoutMs: 5000 });
      assert.equal(rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, "reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED)");
      assert.ok(h.logs.some((l) => l.level === "warn" && /does not keep up/.test(l.msg)), "logged");

      // The reader was never cut off: its stream is alive and it gets the newest version.
      const newest = h.cache.get()!.types.get(EXTENSION_CONFIG)!.version;
      await waitFor(() => reader.received.some((r) => r.version_info === newest), { what: "the reader to get the newest version", timeoutMs: 10_000 });
      assert.equal(reader.status, undefined, "the reader's stream is still open");
      assert.equal(h.streamsOf("reader").length, 1);
    } finally {
      session.destroy();
    }
  });
});
