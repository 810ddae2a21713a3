// placement.ts: the CPU list (taskset syntax) parser and its start-up checks, the wrapper command
// line, and CP_BUILD_CPUS as loadConfig reads it. Pure logic; no process is pinned here (see
// placement-compile.test.ts for that).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  allowedCpus, buildPlacement, cpusAllowedIn, formatCpuList, parseCpuList, placedCommand, resolveBuildCpus, wrapperCouldNotExec,
} from "../../../controlplane/compile/placement.ts";
import { ConfigError, loadConfig, usage, type Config } from "../../../controlplane/config.ts";

describe("parseCpuList", () => {
  const cases: [string, number[]][] = [
    ["1", [1]],
    ["0-1", [0, 1]],
    ["0,2-3", [0, 2, 3]],
    [" 3, 1 ,1 ", [1, 3]],
    ["0-6:2", [0, 2, 4, 6]],
    ["5-5", [5]],
    ["2,0-1", [0, 1, 2]],
  ];
  for (const [text, cpus] of cases) {
    test(`${JSON.stringify(text)} -> ${cpus.join(",")}`, () => assert.deepEqual(parseCpuList(text), cpus));
  }

  const bad: [string, RegExp][] = [
    ["", /expected a CPU list such as 1 or 0-1,3 \(empty\)/],
    ["  ", /\(empty\)/],
    ["a", /"a" is not a CPU number or range/],
    ["1-", /"1-" is not a CPU number or range/],
    ["-1", /"-1" is not a CPU number or range/],
    ["1,,2", /"" is not a CPU number or range/],
    ["0x1", /"0x1" is not a CPU number or range/],
    ["3-1", /range "3-1" ends before it starts/],
    ["0-4:0", /the stride must be at least 1/],
    ["99999", /CPU numbers go up to 4095/],
    ["1.5", /"1.5" is not/],
  ];
  for (const [text, message] of bad) {
    test(`rejects ${JSON.stringify(text)}`, () => assert.throws(() => parseCpuList(text), message));
  }
});

test("formatCpuList gives the shortest list, and round-trips through parseCpuList", () => {
  assert.equal(formatCpuList([0, 1, 2, 5]), "0-2,5");
  assert.equal(formatCpuList([3]), "3");
  assert.equal(formatCpuList([0, 2, 4]), "0,2,4");
  assert.equal(formatCpuList([]), "");
  for (const text of ["0-2,5", "1", "0,2-3,7-9"]) assert.equal(formatCpuList(parseCpuList(text)), text);
});

test("cpusAllowedIn reads Cpus_allowed_list from a /proc status text", () => {
  assert.deepEqual(cpusAllowedIn("Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n"), [0, 1]);
  assert.equal(cpusAllowedIn("Name:\tnode\n"), undefined);
  assert.equal(cpusAllowedIn(undefined), undefined);
});

describe("resolveBuildCpus", () => {
  const yes = (): boolean => true;
  test("returns the canonical list of CPUs this process may use", () => {
    assert.equal(resolveBuildCpus("3,1-2", { allowed: [0, 1, 2, 3], hasTaskset: yes }), "1-3");
  });
  test("a CPU outside the allowed set is refused, naming it and the allowed ones", () => {
    assert.throws(() => resolveBuildCpus("1-3", { allowed: [0, 1], hasTaskset: yes }), /^Error: CPU 2-3 is not available to this process \(it may use 0-1\)$/);
  });
  test("bad syntax says so", () => {
    assert.throws(() => resolveBuildCpus("one", { allowed: [0, 1], hasTaskset: yes }), /"one" is not a CPU number or range/);
  });
  test("off Linux (no Cpus_allowed_list) it is refused", () => {
    assert.throws(() => resolveBuildCpus("0", { allowed: undefined, hasTaskset: yes }), /CPU affinity needs Linux/);
  });
  test("without taskset it is refused", () => {
    assert.throws(() => resolveBuildCpus("0", { allowed: [0], hasTaskset: () => false }), /taskset is not installed/);
  });
});

test("placedCommand wraps the command in taskset and chrt, which exec it (same pid)", () => {
  assert.deepEqual(placedCommand("node", ["a.js"], { idle: false }), { command: "node", args: ["a.js"] });
  assert.deepEqual(placedCommand("node", ["a.js"], { cpus: "1", idle: false }), { command: "taskset", args: ["-c", "1", "node", "a.js"] });
  assert.deepEqual(placedCommand("cargo", ["build"], { cpus: "0-1", idle: true }), {
    command: "taskset", args: ["-c", "0-1", "chrt", "-i", "0", "cargo", "build"],
  });
  assert.deepEqual(placedCommand("node", [], { idle: true }), { command: "chrt", args: ["-i", "0", "node"] });
});

test("wrapperCouldNotExec tells a missing program from a program that failed", () => {
  assert.ok(wrapperCouldNotExec(127, "taskset: failed to execute cargo: No such file or directory\n"));
  assert.ok(wrapperCouldNotExec(127, "chrt: failed to execute cargo: No such file or directory\n"));
  assert.ok(!wrapperCouldNotExec(101, "taskset: failed to execute cargo: No such file or directory\n"));
  assert.ok(!wrapperCouldNotExec(127, "error: could not compile `x`\n"));
});

test("buildPlacement reads what setBuildPlacement hands down", () => {
  assert.deepEqual(buildPlacement({}), { idle: false });
  assert.deepEqual(buildPlacement({ WASM_XDS_BUILD_CPUS: "1", WASM_XDS_BUILD_SCHED: "idle" }), { cpus: "1", idle: true });
  assert.deepEqual(buildPlacement({ WASM_XDS_BUILD_CPUS: " ", WASM_XDS_BUILD_SCHED: "other" }), { idle: false });
});

describe("CP_BUILD_CPUS in loadConfig", () => {
  const mine = allowedCpus() ?? [];
  const load = (argv: string[], env: NodeJS.ProcessEnv): Config => {
    const c = loadConfig(argv, env);
    assert.notEqual(c, "help");
    return c as Config;
  };
  const configError = (env: NodeJS.ProcessEnv, pattern: RegExp): void => {
    assert.throws(() => loadConfig([], env), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes("\n"), "one line");
      return true;
    });
  };

  test("unset: no placement", () => assert.equal(load([], {}).buildCpus, undefined));
  test("listed in --help", () => assert.match(usage(), /--build-cpus\s+CP_BUILD_CPUS\s+Linux CPU list .* \(default any\)/));
  test("a list of this process's CPUs is accepted in canonical form, from the variable or the flag", { skip: mine.length === 0 && "not Linux" }, () => {
    const last = mine[mine.length - 1]!;
    assert.equal(load([], { CP_BUILD_CPUS: ` ${last} ` }).buildCpus, String(last));
    assert.equal(load(["--build-cpus", formatCpuList(mine)], { CP_BUILD_CPUS: "nonsense" }).buildCpus, formatCpuList(mine));
  });
  test("bad syntax is a one-line start-up error naming the variable", () => {
    configError({ CP_BUILD_CPUS: "1-" }, /^CP_BUILD_CPUS="1-": expected a CPU list such as 1 or 0-1,3; "1-" is not a CPU number or range$/);
  });
  test("a CPU this process may not use is a start-up error", { skip: mine.length === 0 && "not Linux" }, () => {
    configError({ CP_BUILD_CPUS: "4095" }, /^CP_BUILD_CPUS="4095": CPU 4095 is not available to this process \(it may use [\d,-]+\)$/);
  });
});
