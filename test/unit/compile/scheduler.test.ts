import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { BuildResult } from "../../../controlplane/compile/builder.ts";
import { BuildScheduler } from "../../../controlplane/compile/scheduler.ts";

/** A build function whose builds finish only when the test says so. */
function fakeBuilds() {
  const calls: string[] = [];
  const pending: { name: string; finish(result?: Partial<BuildResult>): void }[] = [];
  const build = (name: string) =>
    new Promise<BuildResult>((resolve) => {
      calls.push(name);
      pending.push({
        name,
        finish: (result) =>
          resolve({ ok: false, name, error: `${name}: fake`, buildMs: 0, ...result } as BuildResult),
      });
    });
  /** Finishes the oldest running build (which must be `name`) and lets callbacks run. */
  const finish = async (name: string) => {
    const next = pending.shift();
    assert.equal(next?.name, name, `expected a running build of ${name}`);
    next?.finish();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { build, calls, finish, running: () => pending.map((p) => p.name) };
}

function recorder() {
  const events: string[] = [];
  return {
    events,
    hooks: {
      onStart: (name: string) => void events.push(`start ${name}`),
      onResult: (result: BuildResult) => void events.push(`result ${result.name}`),
    },
  };
}

describe("BuildScheduler", () => {
  test("saves during a build coalesce into exactly one more build", async () => {
    const fake = fakeBuilds();
    const rec = recorder();
    const scheduler = new BuildScheduler(fake.build, rec.hooks);
    scheduler.schedule("a");
    assert.equal(scheduler.state("a"), "running");
    scheduler.schedule("a");
    scheduler.schedule("a");
    scheduler.schedule("a");
    assert.equal(scheduler.state("a"), "running-dirty");
    await fake.finish("a");
    assert.deepEqual(fake.calls, ["a", "a"]);
    await fake.finish("a");
    await scheduler.idle();
    assert.deepEqual(fake.calls, ["a", "a"]);
    assert.deepEqual(rec.events, ["start a", "result a", "start a", "result a"]);
    assert.equal(scheduler.state("a"), "idle");
  });

  test("a save after a build finished starts a new one", async () => {
    const fake = fakeBuilds();
    const scheduler = new BuildScheduler(fake.build, recorder().hooks);
    scheduler.schedule("a");
    await fake.finish("a");
    scheduler.schedule("a");
    assert.deepEqual(fake.calls, ["a", "a"]);
    await fake.finish("a");
    await scheduler.idle();
  });

  test("one build at a time across filters, in request order, each name queued once", async () => {
    const fake = fakeBuilds();
    const scheduler = new BuildScheduler(fake.build, recorder().hooks);
    scheduler.schedule("a");
    scheduler.schedule("b");
    scheduler.schedule("c");
    scheduler.schedule("b");
    assert.deepEqual(fake.running(), ["a"]);
    assert.equal(scheduler.state("b"), "queued");
    await fake.finish("a");
    assert.deepEqual(fake.running(), ["b"]);
    await fake.finish("b");
    await fake.finish("c");
    await scheduler.idle();
    assert.deepEqual(fake.calls, ["a", "b", "c"]);
  });

  test("an owed rebuild goes behind filters already waiting", async () => {
    const fake = fakeBuilds();
    const scheduler = new BuildScheduler(fake.build, recorder().hooks);
    scheduler.schedule("a");
    scheduler.schedule("b");
    scheduler.schedule("a"); // dirty
    await fake.finish("a");
    await fake.finish("b");
    await fake.finish("a");
    await scheduler.idle();
    assert.deepEqual(fake.calls, ["a", "b", "a"]);
  });

  test("concurrency above one runs builds side by side", async () => {
    const fake = fakeBuilds();
    const scheduler = new BuildScheduler(fake.build, recorder().hooks, 2);
    scheduler.schedule("a");
    scheduler.schedule("b");
    scheduler.schedule("c");
    assert.deepEqual(fake.running(), ["a", "b"]);
    await fake.finish("a");
    await fake.finish("b");
    await fake.finish("c");
    await scheduler.idle();
  });

  test("cancel drops queued and owed builds", async () => {
    const fake = fakeBuilds();
    const rec = recorder();
    const scheduler = new BuildScheduler(fake.build, rec.hooks);
    scheduler.schedule("a");
    scheduler.schedule("a"); // owed
    scheduler.schedule("b"); // queued
    scheduler.cancel("a");
    scheduler.cancel("b");
    await fake.finish("a"); // the running one still reports
    await scheduler.idle();
    assert.deepEqual(fake.calls, ["a"]);
    assert.deepEqual(rec.events, ["start a", "result a"]);
  });

  test("a throwing build function becomes a failed result and the queue moves on", async () => {
    const results: BuildResult[] = [];
    let calls = 0;
    const scheduler = new BuildScheduler(
      async (name) => {
        calls++;
        if (name === "bad") throw new Error("boom");
        return { ok: false, name, error: "", buildMs: 0 };
      },
      { onResult: (r) => void results.push(r) },
    );
    scheduler.schedule("bad");
    scheduler.schedule("good");
    await scheduler.idle();
    assert.equal(calls, 2);
    assert.equal(results[0]?.ok, false);
    assert.match(results[0]?.ok === false ? results[0].error : "", /^bad: build crashed: boom$/);
    assert.equal(results[1]?.name, "good");
  });

  test("rejects a nonsensical concurrency", () => {
    assert.throws(() => new BuildScheduler(async (name) => ({ ok: false, name, error: "", buildMs: 0 }), { onResult() {} }, 0));
  });
});
