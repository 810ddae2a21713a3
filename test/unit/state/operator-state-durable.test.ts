import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OperatorState, type OperatorStateData, type SavedState, type StateBackend } from "../../../controlplane/state/operator-state.ts";
import { StoreWriteError } from "../../../controlplane/store/durable-file.ts";

/** A backend whose saves fail while `failing` is set (pure logic: the real file case is e2e/durable). */
class FlakyBackend implements StateBackend {
  saved: OperatorStateData | undefined;
  failing = false;
  private revision = 0;
  async load(): Promise<SavedState | undefined> {
    return this.saved && { data: this.saved, revision: this.revision };
  }
  async update(mutate: (latest: OperatorStateData) => OperatorStateData): Promise<SavedState> {
    const data = mutate(structuredClone(this.saved ?? { filters: {} }));
    if (this.failing) throw new StoreWriteError("cannot save operator state: EROFS: read-only file system", "EROFS");
    this.saved = structuredClone(data);
    return { data, revision: ++this.revision };
  }
}

describe("OperatorState saves before it applies", () => {
  test("a failed save changes nothing in memory, tells no listener, and no later save carries it", async () => {
    const backend = new FlakyBackend();
    const state = new OperatorState(backend);
    await state.load();
    await state.update("f", { order: 1 });
    let notified = 0;
    state.onChange(() => notified++);
    backend.failing = true;
    await assert.rejects(state.update("f", { enabled: false }), (err: unknown) => err instanceof StoreWriteError && /EROFS/.test(err.message));
    assert.deepEqual(state.choice("f"), { order: 1 }, "memory unchanged");
    assert.equal(notified, 0, "no listener (no snapshot) for an unsaved change");
    backend.failing = false;
    await state.update("g", { order: 5 });
    assert.deepEqual(backend.saved, { filters: { f: { order: 1 }, g: { order: 5 } } }, "the failed disable is not written later");
    assert.equal(notified, 1);
  });

  test("concurrent updates apply in call order, each on top of the previous one, around a failure", async () => {
    const backend = new FlakyBackend();
    const state = new OperatorState(backend);
    const first = state.update("f", { order: 1 });
    backend.failing = true;
    const failed = state.update("f", { enabled: false });
    await first.catch(() => undefined);
    await assert.rejects(failed);
    backend.failing = false;
    await state.update("f", { configuration: "c" });
    // `first` ran while failing was set too (saves run in order, after the call returns).
    assert.deepEqual(state.choice("f"), backend.saved?.filters.f ?? {});
    assert.equal(state.choice("f").enabled, undefined);
    assert.equal(state.choice("f").configuration, "c");
  });
});
