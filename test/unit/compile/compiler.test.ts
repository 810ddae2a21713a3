import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { getPriority, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { closeCompiler, compileFilter, setCompileNice, type CompileOutcome } from "../../../controlplane/compile/compiler.ts";
import { validateModule } from "../../../controlplane/compile/validate.ts";
import { filterSource } from "./filter-source.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const ADD_HEADER = path.join(REPO, "filters/add-header/index.ts");

function expectOk(outcome: CompileOutcome): Uint8Array {
  if (!outcome.ok) assert.fail(`compile failed: ${outcome.error}`);
  return outcome.wasm;
}

function expectError(outcome: CompileOutcome): string {
  if (outcome.ok) assert.fail("compile unexpectedly succeeded");
  return outcome.error;
}

describe("compileFilter", () => {
  let scratch: string;

  /** Writes `<scratch>/<folder>/index.ts` and returns its path. */
  async function filterFile(folder: string, source: string): Promise<string> {
    const dir = path.join(scratch, folder);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "index.ts");
    await writeFile(file, source);
    return file;
  }

  before(async () => {
    // Outside the repository on purpose: nothing can be found by walking up to our node_modules.
    scratch = await mkdtemp(path.join(tmpdir(), "wasm-xds-compile-"));
  });
  after(async () => {
    await closeCompiler();
    await rm(scratch, { recursive: true, force: true });
  });

  test("add-header compiles to a module Envoy accepts", async () => {
    const wasm = expectOk(await compileFilter(ADD_HEADER));
    const validation = validateModule(wasm);
    assert.ok(validation.ok, validation.ok ? "" : validation.error);
    assert.equal(validation.abiVersion, "0.2.0");
    assert.ok(validation.imports.includes("env.proxy_add_header_map_value"));
    assert.ok(validation.imports.includes("env.proxy_get_buffer_bytes"));
    assert.ok(!validation.imports.includes("env.abort"), "abort must be replaced by abort_proc_exit");
  });

  test("a compile error names the file and the line", async () => {
    const file = await filterFile("broken", filterSource({ statement: "foo(1);" }));
    const error = expectError(await compileFilter(file));
    assert.match(error, /ERROR TS2304: Cannot find name 'foo'/);
    assert.match(error, /broken\/index\.ts\(\d+,\d+\)/);
    assert.doesNotMatch(error, /\u001b\[/, "no ANSI colour codes");
    assert.doesNotMatch(error, /~lib\//, "no standard-library warnings in the error");
  });

  test("a missing entry file is an error, not a crash", async () => {
    const error = expectError(await compileFilter(path.join(scratch, "nope", "index.ts")));
    assert.match(error, /nope\/index\.ts' not found/);
  });

  test("a compiler crash is reported and the next compile gets a fresh compiler", async () => {
    // Without proxy-runtime, `--use abort=abort_proc_exit` names a global that does not exist,
    // which makes asc 0.14 throw instead of reporting a diagnostic.
    const file = await filterFile("no-runtime", "export function noop(): void {}\n");
    assert.match(expectError(await compileFilter(file)), /compiler crashed: .*abort_proc_exit/);
    assert.ok(validateModule(expectOk(await compileFilter(ADD_HEADER))).ok);
  });

  test("a worker that dies says what crashed: the file, the exit code and its last output", async () => {
    // The test hook in compile-worker.ts exits the worker the way an Emscripten abort does.
    await closeCompiler();
    process.env.WASM_XDS_TEST_COMPILER_CRASH = "crash-marker";
    try {
      const file = await filterFile("crash-marker", filterSource({}));
      const error = expectError(await compileFilter(file));
      assert.match(error, /^compiler worker exited \(code 7\) while compiling \S*crash-marker\/index\.ts; its last output: Aborted\(simulated compiler crash/);
    } finally {
      delete process.env.WASM_XDS_TEST_COMPILER_CRASH;
      await closeCompiler();
    }
    assert.ok(validateModule(expectOk(await compileFilter(ADD_HEADER))).ok, "the next compile gets a fresh worker");
  });

  test("a filter outside the repo uses this control plane's proxy-runtime", async () => {
    // A decoy runtime in the node_modules asc searches first (the one under its base
    // directory): it must not be used.
    const decoy = path.join(scratch, "node_modules/@solo-io/proxy-runtime");
    await mkdir(path.join(decoy, "assembly"), { recursive: true });
    await writeFile(path.join(decoy, "package.json"), `{"name":"@solo-io/proxy-runtime"}`);
    await writeFile(path.join(decoy, "assembly/proxy.ts"), "this is not AssemblyScript");
    await writeFile(path.join(decoy, "assembly/index.ts"), "this is not AssemblyScript");
    const file = await filterFile("elsewhere", filterSource({ rootId: "elsewhere" }));
    const wasm = expectOk(await compileFilter(file, { baseDir: scratch }));
    assert.ok(validateModule(wasm).ok);
  });

  test("successive compiles of different files give their own output (no leaked state)", async () => {
    const a = await filterFile("state-a", filterSource({ statement: `stream_context.headers.request.add("x-a", "a");` }));
    const b = await filterFile("state-b", filterSource({ statement: `foo();` }));
    const c = await filterFile("state-c", filterSource({ rootId: "c", statement: `stream_context.headers.response.add("x-c", "ccc");` }));
    const first = expectOk(await compileFilter(a));
    expectError(await compileFilter(b)); // a failed compile in between must not poison the next
    const other = expectOk(await compileFilter(c));
    const again = expectOk(await compileFilter(a));
    assert.notDeepEqual(first, other);
    assert.deepEqual(first, again, "same source, same bytes");
  });

  test("concurrent calls are queued and each gets its own result", async () => {
    const a = await filterFile("conc-a", filterSource({ rootId: "conc-a" }));
    const b = await filterFile("conc-b", filterSource({ statement: "nope();" }));
    const [ra, rb, ra2] = await Promise.all([compileFilter(a), compileFilter(b), compileFilter(a)]);
    assert.deepEqual(expectOk(ra), expectOk(ra2));
    assert.match(expectError(rb), /nope/);
  });

  test("closeCompiler fails compiles in flight instead of leaving them hanging", async () => {
    const pending = [compileFilter(ADD_HEADER), compileFilter(ADD_HEADER)];
    await closeCompiler();
    for (const outcome of await Promise.all(pending)) {
      assert.equal(expectError(outcome), "compiler shut down");
    }
    assert.ok(validateModule(expectOk(await compileFilter(ADD_HEADER))).ok, "usable again afterwards");
  });

  test("setCompileNice lowers the compile thread only", async () => {
    await closeCompiler();
    setCompileNice(7);
    try {
      assert.ok(validateModule(expectOk(await compileFilter(ADD_HEADER))).ok);
      const nices = await threadNiceValues();
      // The worker thread, and any thread it started after lowering itself, run at 7.
      assert.ok(nices.includes(7), `a thread at nice 7: ${nices.join(",")}`);
      assert.ok(nices.filter((n) => n === 0).length >= nices.length / 2, `most threads keep nice 0: ${nices.join(",")}`);
      assert.equal(getPriority(), 0, "the main thread keeps its priority");
    } finally {
      setCompileNice(0);
      await closeCompiler();
    }
  });

  test("-O3 builds a valid, smaller module", async () => {
    const plain = expectOk(await compileFilter(ADD_HEADER));
    const optimized = expectOk(await compileFilter(ADD_HEADER, { optimize: true }));
    assert.ok(validateModule(optimized).ok);
    assert.ok(optimized.length < plain.length, `${optimized.length} < ${plain.length}`);
  });

  describe("imports Envoy lacks are caught by validateModule", () => {
    const cases = [
      { label: "Math.random", statement: `if (Math.random() > 2.0) return FilterHeadersStatusValues.Continue;`, imports: "", expect: /env\.seed, which Envoy does not provide \(Math\.random\?\)/ },
      { label: "trace", statement: `trace("hi");`, imports: "", expect: /env\.trace, which Envoy does not provide \(trace\(\)\?\)/ },
      { label: "clear_route_cache", statement: `clear_route_cache();`, imports: `import { clear_route_cache } from "@solo-io/proxy-runtime/runtime";`, expect: /env\.proxy_clear_route_cache, which Envoy does not provide \(only in proxy-wasm ABI 0\.1\.0/ },
    ];
    for (const c of cases) {
      test(c.label, async () => {
        const file = await filterFile(`uses-${c.label.replace(/\W/g, "")}`, filterSource({ statement: c.statement, imports: c.imports }));
        const validation = validateModule(expectOk(await compileFilter(file)));
        assert.equal(validation.ok, false);
        if (!validation.ok) assert.match(validation.error, c.expect);
      });
    }
  });
});

/** Nice value of each thread of this process (field 19 of /proc/<pid>/task/<tid>/stat). */
async function threadNiceValues(): Promise<number[]> {
  const dir = `/proc/${process.pid}/task`;
  const values: number[] = [];
  for (const tid of await readdir(dir)) {
    const stat = await readFile(path.join(dir, tid, "stat"), "utf8");
    // Fields after the parenthesised command name; nice is the 17th of those.
    values.push(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]));
  }
  return values;
}
