import assert from "node:assert/strict";
import { describe, test } from "node:test";
import protobuf from "protobufjs";
import { decodeStreamMetricsMessage, encodeStreamMetricsMessage } from "../../../controlplane/health/metrics-wire.ts";

describe("StreamMetricsMessage wire decoding", () => {
  test("round-trips the node and counter/gauge values", () => {
    const bytes = encodeStreamMetricsMessage({
      node: { id: "envoy-1", cluster: "edge" },
      metrics: [
        { name: "wasm.f.vm_reload_backoff", kind: "counter", value: 3 },
        { name: "server.live", kind: "gauge", value: 1 },
      ],
    });
    assert.deepEqual(decodeStreamMetricsMessage(bytes), {
      node: { id: "envoy-1", cluster: "edge" },
      metrics: [
        { name: "wasm.f.vm_reload_backoff", kind: "counter", value: 3 },
        { name: "server.live", kind: "gauge", value: 1 },
      ],
    });
  });

  test("later messages carry no node; unknown fields are skipped", () => {
    const known = encodeStreamMetricsMessage({ metrics: [{ name: "c", kind: "counter", value: 2 }] });
    // Append a field Envoy might add (number 9, varint) and a MetricFamily with help text and a label.
    const label = protobuf.Writer.create().uint32((1 << 3) | 2).string("k").uint32((2 << 3) | 2).string("v").finish();
    const counter = protobuf.Writer.create().uint32((1 << 3) | 1).double(4).finish();
    const metric = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(label).uint32((3 << 3) | 2).bytes(counter).uint32((6 << 3) | 0).int64(123).finish();
    const family = protobuf.Writer.create().uint32((1 << 3) | 2).string("d").uint32((2 << 3) | 2).string("help").uint32((4 << 3) | 2).bytes(metric).finish();
    const extra = protobuf.Writer.create().uint32((9 << 3) | 0).uint32(1).uint32((2 << 3) | 2).bytes(family).finish();
    const bytes = new Uint8Array([...known, ...extra]);
    const decoded = decodeStreamMetricsMessage(bytes);
    assert.equal(decoded.node, undefined);
    assert.deepEqual(decoded.metrics, [{ name: "c", kind: "counter", value: 2 }, { name: "d", kind: "counter", value: 4 }]);
  });

  test("malformed bytes fail with context", () => {
    assert.throws(() => decodeStreamMetricsMessage(new Uint8Array([0x12, 0x50, 0x01])), /malformed StreamMetricsMessage \(3 bytes\)/);
  });
});
