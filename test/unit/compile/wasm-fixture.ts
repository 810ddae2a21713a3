// Hand-assembles tiny Wasm modules with chosen imports and exports, so validateModule can be
// tested against exact shapes without running the AssemblyScript compiler.

export interface FixtureImport {
  module: string;
  name: string;
  kind?: "function" | "memory" | "global";
}

export function wasmModule(spec: { imports?: FixtureImport[]; exports?: string[] }): Uint8Array {
  const imports = spec.imports ?? [];
  const exports = spec.exports ?? [];
  const importedFunctions = imports.filter((i) => (i.kind ?? "function") === "function").length;

  const typeSection = vec([[0x60, 0x00, 0x00]]); // one type: () -> ()
  const importSection = vec(
    imports.map((i) => {
      const kind = i.kind ?? "function";
      const desc =
        kind === "function" ? [0x00, 0x00] : kind === "memory" ? [0x02, 0x00, 0x01] : [0x03, 0x7f, 0x00];
      return [...name(i.module), ...name(i.name), ...desc];
    }),
  );
  const functionSection = vec(exports.map(() => [0x00]));
  const exportSection = vec(
    exports.map((e, index) => [...name(e), 0x00, ...u32(importedFunctions + index)]),
  );
  const codeSection = vec(exports.map(() => [0x02, 0x00, 0x0b])); // size 2: no locals, end

  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, typeSection),
    ...section(2, importSection),
    ...section(3, functionSection),
    ...section(7, exportSection),
    ...section(10, codeSection),
  ]);
}

function u32(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function name(text: string): number[] {
  const bytes = [...new TextEncoder().encode(text)];
  return [...u32(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...u32(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...u32(body.length), ...body];
}
