// Decodes Envoy's metrics_service stat sink messages (envoy.service.metrics.v3.StreamMetricsMessage).
//
// The message carries `repeated io.prometheus.client.MetricFamily`, whose .proto is not among
// the protos the npm packages ship (proto/includes.json), and we copy no third-party proto text.
// So this reads the protobuf wire format directly, by field number, and keeps only what the
// control plane uses: the node of the first message, and each counter's or gauge's name and
// value. Field numbers (prometheus client_model metrics.proto, stable since 2015):
//   StreamMetricsMessage { Identifier identifier = 1; repeated MetricFamily envoy_metrics = 2; }
//   Identifier           { envoy.config.core.v3.Node node = 1; }
//   MetricFamily         { string name = 1; string help = 2; MetricType type = 3; repeated Metric metric = 4; }
//   Metric               { repeated LabelPair label = 1; Gauge gauge = 2; Counter counter = 3; ... }
//   Counter / Gauge      { double value = 1; }
// Everything else (help, labels, summaries, histograms, timestamps) is skipped.
import protobuf from "protobufjs";
import { envoyRoot } from "../xds/protos.ts";

export interface SinkNode {
  id: string;
  cluster: string;
}

export interface SinkMetric {
  name: string;
  kind: "counter" | "gauge";
  value: number;
}

export interface SinkMessage {
  /** Present in the first message of a stream only. */
  node?: SinkNode;
  metrics: SinkMetric[];
}

const WIRE_LEN = 2;
const WIRE_I64 = 1;

/** Runs `field(number, wireType)` for each field of the message in `reader` up to `end`. */
function fields(reader: protobuf.Reader, end: number, field: (num: number, wire: number) => boolean): void {
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (!field(tag >>> 3, tag & 7)) reader.skipType(tag & 7);
  }
}

function sub(reader: protobuf.Reader): number {
  const len = reader.uint32();
  return reader.pos + len;
}

function decodeNode(bytes: Uint8Array): SinkNode {
  const Node = envoyRoot().lookupType("envoy.config.core.v3.Node");
  const node = Node.toObject(Node.decode(bytes)) as { id?: string; cluster?: string };
  return { id: node.id ?? "", cluster: node.cluster ?? "" };
}

function decodeValue(reader: protobuf.Reader, end: number): number | undefined {
  let value: number | undefined;
  fields(reader, end, (num, wire) => {
    if (num === 1 && wire === WIRE_I64) {
      value = reader.double();
      return true;
    }
    return false;
  });
  return value;
}

function decodeMetric(reader: protobuf.Reader, end: number): { kind: SinkMetric["kind"]; value: number } | undefined {
  let out: { kind: SinkMetric["kind"]; value: number } | undefined;
  fields(reader, end, (num, wire) => {
    if ((num === 2 || num === 3) && wire === WIRE_LEN) {
      const value = decodeValue(reader, sub(reader));
      out = { kind: num === 3 ? "counter" : "gauge", value: value ?? 0 };
      return true;
    }
    return false;
  });
  return out;
}

function decodeFamily(reader: protobuf.Reader, end: number, into: SinkMetric[]): void {
  let name = "";
  const values: { kind: SinkMetric["kind"]; value: number }[] = [];
  fields(reader, end, (num, wire) => {
    if (num === 1 && wire === WIRE_LEN) {
      name = reader.string();
      return true;
    }
    if (num === 4 && wire === WIRE_LEN) {
      const m = decodeMetric(reader, sub(reader));
      if (m) values.push(m);
      return true;
    }
    return false;
  });
  for (const v of values) into.push({ name, ...v });
}

/** Decodes one StreamMetricsMessage; throws (with what failed) on malformed bytes. */
export function decodeStreamMetricsMessage(bytes: Uint8Array): SinkMessage {
  const reader = protobuf.Reader.create(bytes);
  const message: SinkMessage = { metrics: [] };
  try {
    fields(reader, bytes.length, (num, wire) => {
      if (num === 1 && wire === WIRE_LEN) {
        const end = sub(reader);
        fields(reader, end, (n, w) => {
          if (n === 1 && w === WIRE_LEN) {
            message.node = decodeNode(reader.bytes());
            return true;
          }
          return false;
        });
        return true;
      }
      if (num === 2 && wire === WIRE_LEN) {
        decodeFamily(reader, sub(reader), message.metrics);
        return true;
      }
      return false;
    });
  } catch (err) {
    throw new Error(`malformed StreamMetricsMessage (${bytes.length} bytes): ${(err as Error).message}`);
  }
  return message;
}

/** The inverse, for tests and the unit suite: encodes the fields decodeStreamMetricsMessage reads. */
export function encodeStreamMetricsMessage(message: SinkMessage): Uint8Array {
  const w = protobuf.Writer.create();
  if (message.node) {
    const Node = envoyRoot().lookupType("envoy.config.core.v3.Node");
    const node = Node.encode(Node.fromObject({ id: message.node.id, cluster: message.node.cluster })).finish();
    const identifier = protobuf.Writer.create().uint32((1 << 3) | WIRE_LEN).bytes(node).finish();
    w.uint32((1 << 3) | WIRE_LEN).bytes(identifier);
  }
  for (const m of message.metrics) {
    const value = protobuf.Writer.create().uint32((1 << 3) | WIRE_I64).double(m.value).finish();
    const metric = protobuf.Writer.create().uint32(((m.kind === "counter" ? 3 : 2) << 3) | WIRE_LEN).bytes(value).finish();
    // MetricType: COUNTER = 0, GAUGE = 1.
    const family = protobuf.Writer.create()
      .uint32((1 << 3) | WIRE_LEN).string(m.name)
      .uint32((3 << 3) | 0).uint32(m.kind === "counter" ? 0 : 1)
      .uint32((4 << 3) | WIRE_LEN).bytes(metric)
      .finish();
    w.uint32((2 << 3) | WIRE_LEN).bytes(family);
  }
  return w.finish();
}
