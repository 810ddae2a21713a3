// CP_BUILD_CPUS end to end below the control plane: with a placement, compiles run in a child
// process (compile-child.ts) started under taskset/chrt, with the requested CPUs, nice value and
// SCHED_IDLE as /proc shows them; builds still succeed and fail as in-thread; the child goes with
// its worker; cargo starts under the same placement. Real processes throughout; no timing.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cargoBuild } from "../../../controlplane/compile/cargo-build.ts";
import { closeCompiler, compileFilter, setCompileNice, type CompileOutcome } from "../../../controlplane/compile/compiler.ts";
import { allowedCpus, cpusAllowedIn, formatCpuList, setBuildPlacement } from "../../../controlplane/compile/placement.ts";
import { validateModule } from "../../../controlplane/compile/validate.ts";
import { waitFor } from "../../support/wait.ts";
import { filterSource } from "./filter-source.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const ADD_HEADER = path.join(REPO, "filters/add-header/index.ts");
const allowed = allowedCpus();
// The last CPU: on a machine with more than one, a set this process's own differs from.
const CPU = allowed ? String(allowed[allowed.length - 1]) : "0";
const skip = allowed === undefined ? "CPU affinity is Linux only" : false;

/** Fields of /proc/<pid>/stat after the command name: [0] is field 3 (state). */
function statFields(pid: number): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}
const SCHED_IDLE = 5;

/** Live compile children of this process (compile-child.ts), by pid. */
function compileChildren(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(Number(entry))[1]) !== process.pid) continue;
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("compile-child.ts")) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function expectOk(outcome: CompileOutcome): Uint8Array {
  if (!outcome.ok) assert.fail(`compile failed: ${outcome.error}`);
  return outcome.wasm;
}

describe("placed builds (CP_BUILD_CPUS)", { skip }, () => {
  let scratch: string;
  let inThread: Uint8Array;

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-placement-"));
    await closeCompiler();
    inThread = expectOk(await compileFilter(ADD_HEADER));
    assert.deepEqual(compileChildren(), [], "no placement: compiles stay in the worker thread");
    await closeCompiler();
  });
  after(async () => {
    setBuildPlacement({ idle: false });
    setCompileNice(0);
    await closeCompiler();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test("a compile runs in a child process on the requested CPU, at the nice value and under SCHED_IDLE; same bytes", async () => {
    setBuildPlacement({ cpus: CPU, idle: true });
    setCompileNice(3);
    const wasm = expectOk(await compileFilter(ADD_HEADER));
    assert.ok(validateModule(wasm).ok);
    assert.deepEqual(wasm, inThread, "the same module as an in-thread compile");
    const [child, ...more] = compileChildren();
    assert.ok(child !== undefined && more.length === 0, `one compile child: ${compileChildren().join(",")}`);
    const status = fs.readFileSync(`/proc/${child}/status`, "utf8");
    assert.equal(formatCpuList(cpusAllowedIn(status) ?? []), CPU, "Cpus_allowed_list of the compile process");
    // Every thread of it (V8's helper threads too), which is why it is a process.
    for (const tid of fs.readdirSync(`/proc/${child}/task`)) {
      const threadStatus: string = fs.readFileSync(`/proc/${child}/task/${tid}/status`, "utf8");
      assert.equal(formatCpuList(cpusAllowedIn(threadStatus) ?? []), CPU, `thread ${tid}`);
    }
    const fields = statFields(child);
    assert.equal(Number(fields[16]), 3, "nice inherited from the compile thread");
    assert.equal(Number(fields[38]), SCHED_IDLE, "scheduling policy");
    assert.equal(os.getPriority(), 0, "the main thread keeps its priority");
  });

  test("a compile error still comes back as the filter's diagnostic", async () => {
    const dir = path.join(scratch, "broken");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "index.ts"), filterSource({ statement: "foo(1);" }));
    const outcome = await compileFilter(path.join(dir, "index.ts"));
    assert.equal(outcome.ok, false);
    if (!outcome.ok) assert.match(outcome.error, /ERROR TS2304: Cannot find name 'foo'/);
    assert.equal(compileChildren().length, 1, "the same child carries on after a failed compile");
  });

  test("a compile process that dies is replaced by a fresh one for the next compile", async () => {
    const [first] = compileChildren();
    assert.ok(first !== undefined);
    process.kill(first, "SIGKILL");
    await waitFor(() => !compileChildren().includes(first), { what: "the killed compile process to go", timeoutMs: 10_000 });
    // The worker thread exits with it; the pool may only notice when handing out the next job.
    let outcome = await compileFilter(ADD_HEADER);
    if (!outcome.ok) {
      assert.match(outcome.error, /compile process \d+ ended \(SIGKILL\)/);
      outcome = await compileFilter(ADD_HEADER);
    }
    assert.deepEqual(expectOk(outcome), inThread);
    const [second] = compileChildren();
    assert.ok(second !== undefined && second !== first, "a new compile process");
    assert.equal(formatCpuList(cpusAllowedIn(fs.readFileSync(`/proc/${second}/status`, "utf8")) ?? []), CPU);
  });

  test("closing the compiler (and so terminating its worker) ends the compile process", async () => {
    assert.equal(compileChildren().length, 1);
    await closeCompiler();
    await waitFor(() => compileChildren().length === 0, { what: "the compile process to be killed with its worker", timeoutMs: 10_000 });
  });

  test("cargo starts under the placement (its children inherit it); a missing cargo is still named", async () => {
    setBuildPlacement({ cpus: CPU, idle: false });
    const fake = path.join(scratch, "fake-cargo");
    // Stands in for cargo: says where it runs, then fails like a build would.
    fs.writeFileSync(fake, "#!/bin/sh\ngrep Cpus_allowed_list /proc/self/status >&2\nexit 3\n", { mode: 0o755 });
    const dir = path.join(scratch, "rusty");
    fs.mkdirSync(dir, { recursive: true });
    const opts = { targetDir: path.join(scratch, "target"), baseDir: scratch };
    const outcome = await cargoBuild(dir, { ...opts, cargo: fake });
    assert.equal(outcome.ok, false);
    if (!outcome.ok) assert.match(outcome.error, new RegExp(`exit code 3\\); its output:\\nCpus_allowed_list:\\s+${CPU}$`));
    const missing = await cargoBuild(dir, { ...opts, cargo: path.join(scratch, "no-such-cargo") });
    assert.equal(missing.ok, false);
    if (!missing.ok) assert.match(missing.error, /^cargo not found \(.*no-such-cargo\): Rust filters need the Rust toolchain/);
  });
});
