// A peer that never reads its responses cannot make the control plane buffer without bound
// (issue 10, item 7). Seen before: 100 HTTP/2 clients that never read and 80 changes carrying a
// 60 KB configuration grew the process from 378 to 805 MB, linearly. Now a SotW stream keeps only
// the newest queued response per type, and a Delta stream with too much queued is reset (and
// counted); a client that reads keeps up through the same changes.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, afterEach, before, describe, it } from "node:test";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import { DEFAULT_WRITE_LIMITS } from "../../controlplane/xds/write-budget.ts";
import { adsClientConstructor } from "../../bench/support/sim-envoy.ts";
import { filterSpec, nodeOf, snapshotOf, sotwAck, startXds, type XdsHarness } from "../support/xds-client.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG_BYTES = 60 * 1024;
/** Enough changes of a 60 KB configuration to pass a Delta stream's byte budget; bounded. */
const CHANGES = Math.ceil(DEFAULT_WRITE_LIMITS.maxQueuedBytes / CONFIG_BYTES) + 20;
const ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService";

const bigFilter = (i: number) => ({ ...filterSpec("f1", "a"), configuration: `${i}:`.padEnd(CONFIG_BYTES, "x") });

/** A gRPC message frame: flag byte, big-endian length, the message. */
function frame(method: "StreamAggregatedResources" | "DeltaAggregatedResources", req: unknown): Buffer {
  const m = (adsClientConstructor() as unknown as { service: Record<string, { requestSerialize(r: unknown): Buffer }> }).service[method]!;
  const body = m.requestSerialize(req);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** A raw HTTP/2 client that sends one request and then reads nothing until `resume()`. */
function nonReader(port: number, method: "StreamAggregatedResources" | "DeltaAggregatedResources", req: unknown) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  const stream = session.request({ ":method": "POST", ":path": `${ADS}/${method}`, "content-type": "application/grpc", te: "trailers" });
  stream.on("error", () => undefined);
  let rstCode: number | undefined;
  stream.on("close", () => (rstCode = stream.rstCode));
  stream.pause();
  stream.write(frame(method, req));
  const chunks: Buffer[] = [];
  return {
    get rstCode() {
      return rstCode;
    },
    /** Starts reading; resolves the gRPC messages received so far once `enough` says so. */
    resume() {
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.resume();
    },
    /** Number of complete gRPC messages read. */
    messages(): number {
      const all = Buffer.concat(chunks);
      let n = 0;
      for (let at = 0; at + 5 <= all.length; n++) {
        const len = all.readUInt32BE(at + 1);
        if (at + 5 + len > all.length) break;
        at += 5 + len;
      }
      return n;
    },
    destroy: () => session.destroy(),
  };
}

describe("xDS write backpressure", () => {
  let h: XdsHarness;
  before(async () => {
    h = await startXds(snapshotOf({ filters: [bigFilter(0)] }));
  });
  afterEach(() => h.reset());
  after(() => h.close());

  /** Publishes CHANGES snapshots, letting the writes reach the socket between them. */
  async function change(until: () => boolean = () => false): Promise<void> {
    for (let i = 1; i <= CHANGES && !until(); i++) {
      h.cache.set(snapshotOf({ filters: [bigFilter(i)] }));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  it("SotW: a peer that does not read holds at most one queued response per type; a reader keeps up", { timeout: 60_000 }, async () => {
    const slow = nonReader(h.port, "StreamAggregatedResources", { node: nodeOf("slow"), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    const reader = h.connect().sotw();
    reader.send({ node: nodeOf("reader"), type_url: EXTENSION_CONFIG, resource_names: ["f1"] });
    reader.send(sotwAck(await reader.nextOf(EXTENSION_CONFIG), ["f1"]));
    await waitFor(() => h.streamsOf("slow").length === 1, { what: "the non-reader's stream to register", timeoutMs: 5000 });
    try {
      await change();
      const newest = h.cache.get()!.types.get(EXTENSION_CONFIG)!.version;
      await waitFor(() => reader.received.some((r) => r.version_info === newest), { what: "the reader to get the newest version", timeoutMs: 10_000 });
      assert.equal(h.streamsOf("slow").length, 1, "the non-reader's SotW stream is not reset: it costs one response per type");
      assert.equal(h.clients.slowStreamsClosed, 0);

      // Once it reads, it gets what was in flight and then the newest version: not every change.
      slow.resume();
      await waitFor(() => slow.messages() >= 2 || undefined, { what: "the non-reader to read its responses", timeoutMs: 10_000 });
      await waitFor(async () => {
        const before = slow.messages();
        await new Promise((resolve) => setImmediate(resolve));
        return slow.messages() === before && h.streamsOf("slow")[0]?.types.get(EXTENSION_CONFIG)?.sentVersion === newest;
      }, { what: "the non-reader to drain", timeoutMs: 10_000 });
      assert.ok(slow.messages() < CHANGES / 4, `it read ${slow.messages()} responses for ${CHANGES} changes: older ones were superseded`);
      assert.equal(reader.status, undefined, "the reader's stream is still open");
    } finally {
      slow.destroy();
    }
  });

  it("Delta: a peer that does not read is reset past the byte budget, counted and logged", { timeout: 60_000 }, async () => {
    const slow = nonReader(h.port, "DeltaAggregatedResources", { node: nodeOf("slow-delta"), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    const reader = h.connect().delta();
    reader.send({ node: nodeOf("reader-delta"), type_url: EXTENSION_CONFIG, resource_names_subscribe: ["f1"] });
    reader.send({ type_url: EXTENSION_CONFIG, response_nonce: (await reader.nextOf(EXTENSION_CONFIG)).nonce });
    await waitFor(() => h.streamsOf("slow-delta").length === 1, { what: "the non-reader's stream to register", timeoutMs: 5000 });
    try {
      await change(() => h.streamsOf("slow-delta").length === 0);
      await waitFor(() => h.streamsOf("slow-delta").length === 0, {
        what: "the non-reader's stream to be dropped",
        timeoutMs: 10_000,
        details: () => `slow streams reset: ${h.clients.slowStreamsClosed}`,
      });
      assert.equal(h.clients.slowStreamsClosed, 1, "one slow stream reset and counted");
      await waitFor(() => slow.rstCode !== undefined, { what: "the HTTP/2 stream to be reset", timeoutMs: 5000 });
      assert.equal(slow.rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, "reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED)");
      assert.ok(h.logs.some((l) => l.level === "warn" && /does not keep up/.test(l.msg)), "logged");
      assert.equal(reader.status, undefined, "the reader's stream is still open");
      assert.equal(h.streamsOf("reader-delta").length, 1);
    } finally {
      slow.destroy();
    }
  });
});
