// The protobufjs JSON cache of Envoy's types must encode exactly like the parsed .proto files:
// every field of every type keeps its number, type, label, packing (for repeated scalars), map
// shape and resolved type through the round trip.
import assert from "node:assert/strict";
import { test } from "node:test";
import protobuf from "protobufjs";
import { envoyRoot, parseEnvoyRoot } from "../../../controlplane/xds/protos.ts";

const DESCRIPTOR_TYPE = /^\.google\.protobuf\.(FileDescriptorSet|FileDescriptorProto|DescriptorProto|FieldDescriptorProto|OneofDescriptorProto|EnumDescriptorProto|EnumValueDescriptorProto|ServiceDescriptorProto|MethodDescriptorProto|FileOptions|MessageOptions|FieldOptions|OneofOptions|EnumOptions|EnumValueOptions|ServiceOptions|MethodOptions|UninterpretedOption|SourceCodeInfo|GeneratedCodeInfo|ExtensionRangeOptions|FeatureSet|FeatureSetDefaults)(\.|$)/;

function fieldsOf(root: protobuf.Root): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      // descriptor.proto's types are protobufjs's shared built-ins, whose field names come out
      // camelCase or snake_case depending on whether @grpc/proto-loader loaded them first; they
      // describe .proto files and never appear in a resource we encode.
      if (obj instanceof protobuf.Type && !DESCRIPTOR_TYPE.test(obj.fullName)) {
        for (const f of obj.fieldsArray) {
          f.resolve();
          // Packing only matters on the wire for repeated fields.
          const packed = f.repeated ? String(f.packed) : "-";
          out.set(`${obj.fullName}.${f.name}`, [f.id, f.type, f.repeated, packed, f.map, f.resolvedType?.fullName ?? ""].join(" "));
        }
      }
      if (obj instanceof protobuf.Namespace) walk(obj);
    }
  };
  walk(root);
  return out;
}

test("Envoy's types loaded from the JSON cache match the parsed .proto files field by field", () => {
  const parsed = parseEnvoyRoot();
  const roundTripped = protobuf.Root.fromJSON(JSON.parse(JSON.stringify(parsed.toJSON())) as protobuf.INamespace);
  roundTripped.resolveAll();
  const a = fieldsOf(parsed);
  assert.ok(a.size > 1000, `${a.size} fields`);
  assert.deepEqual(fieldsOf(roundTripped), a);
  // And what the control plane uses (cached or parsed, whichever this machine has) is the same.
  assert.deepEqual(fieldsOf(envoyRoot()), a);
});
