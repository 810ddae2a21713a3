// The benchmark's target lines (bench/lib/goals.ts): issue 16's AssemblyScript-vs-Rust and
// reload-window goals, read from hand-made rows (pure arithmetic; the numbers are not real).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { evaluateGoals } from "../../../bench/lib/goals.ts";
import type { ReloadResult } from "../../../bench/lib/reload-run.ts";
import type { Row } from "../../../bench/lib/summary.ts";

const row = (id: string, envoyCpuUs: number, reqPerSec: number): Row =>
  ({ target: { id }, mode: "closed", envoyCpuUs, reqPerSec: { median: reqPerSec } }) as unknown as Row;

const reload = (kind: string, inside: number, outside: number): ReloadResult =>
  ({ kind, load: "open loop", inside: { p99: inside }, outside: { p99: outside }, actions: [], requests: 1, non2xx: 0,
    socketErrors: 0, probe: { requests: 1, non2xx: 0, socketErrors: 0, errorKinds: {} } }) as unknown as ReloadResult;

const find = (goals: ReturnType<typeof evaluateGoals>, start: string) => {
  const g = goals.find((x) => x.goal.startsWith(start));
  assert.ok(g, `a goal starting "${start}"`);
  return g;
};

describe("bench goals", () => {
  test("AssemblyScript vs Rust: CPU over no filter, and throughput, from the same rows", () => {
    const rows = [row("dr-none", 40, 10_000), row("dr-wasm", 62, 7_000), row("dr-wasm-rust", 60, 7_500)];
    const goals = evaluateGoals(rows, []);
    const cpu = find(goals, "AssemblyScript Envoy CPU");
    assert.match(cpu.measured, /^1\.10x/);
    assert.equal(cpu.met, true, "22 us over none vs 20 us is 1.10x: at the limit");
    const tput = find(goals, "AssemblyScript direct_response throughput");
    assert.match(tput.measured, /^0\.93x/);
    assert.equal(tput.met, false);
    const worse = evaluateGoals([row("dr-none", 40, 1), row("dr-wasm", 63, 1), row("dr-wasm-rust", 60, 1)], []);
    assert.equal(find(worse, "AssemblyScript Envoy CPU").met, false);
  });

  test("without Rust rows there is no Rust goal", () => {
    assert.equal(evaluateGoals([row("dr-none", 40, 1), row("dr-wasm", 62, 1)], []).some((g) => g.goal.includes("Rust")), false);
  });

  test("edit windows are judged at 2x, the recompile-only control at 1.5x; toggles are shown, not judged", () => {
    const goals = evaluateGoals([], [reload("edit", 19, 10), reload("rebuild", 16, 10), reload("toggle", 40, 10)]);
    assert.equal(find(goals, "p99 inside edit").met, true);
    const control = find(goals, "p99 inside recompile-only");
    assert.equal(control.met, false, "1.6x > 1.5x");
    assert.ok(control.also.some((l) => l.startsWith("(shown) toggle")));
  });
});
