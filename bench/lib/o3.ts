/**
 * An -O3 build of add-header, for the optional `--o3` rows: the control plane serves the fast
 * unoptimised build (live edits), and these rows show what an optimised module would cost per
 * request instead. Compiled with the control plane's own compiler (same flags plus -O3).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export async function buildOptimised(filtersDir: string, name: string, outDir: string): Promise<{ file: string; sha256: string; compileMs: number }> {
  // Loaded only for --o3, so the default bench never depends on the compiler's internals.
  const { closeCompiler, compileFilter } = await import("../../controlplane/compile/compiler.ts");
  const r = await compileFilter(path.join(filtersDir, name, "index.ts"), { optimize: true, baseDir: path.dirname(filtersDir) });
  await closeCompiler();
  if (!r.ok) throw new Error(`-O3 build of ${name}: ${r.error}`);
  const sha256 = createHash("sha256").update(r.wasm).digest("hex");
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${name}-O3-${sha256.slice(0, 12)}.wasm`);
  fs.writeFileSync(file, r.wasm);
  return { file, sha256, compileMs: r.durationMs };
}
