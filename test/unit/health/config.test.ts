import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, loadConfig, usage, type Config } from "../../../controlplane/config.ts";

describe("auto-disable settings", () => {
  test("defaults: 5 failures within 60 s; 0 turns it off", () => {
    const c = loadConfig([], {}) as Config;
    assert.equal(c.autoDisableAfter, 5);
    assert.equal(c.autoDisableWindowS, 60);
    assert.equal((loadConfig([], { CP_AUTO_DISABLE_AFTER: "0" }) as Config).autoDisableAfter, 0);
    assert.match(usage(), /--auto-disable-after\s+CP_AUTO_DISABLE_AFTER .*\(default 5\)/);
    assert.match(usage(), /--auto-disable-window\s+CP_AUTO_DISABLE_WINDOW .*\(default 60\)/);
  });

  test("bad values are one-line errors naming the variable", () => {
    for (const [env, pattern] of [
      [{ CP_AUTO_DISABLE_AFTER: "-1" }, /^CP_AUTO_DISABLE_AFTER="-1": expected an integer 0-1000000$/],
      [{ CP_AUTO_DISABLE_AFTER: "lots" }, /^CP_AUTO_DISABLE_AFTER="lots"/],
      [{ CP_AUTO_DISABLE_WINDOW: "0" }, /^CP_AUTO_DISABLE_WINDOW="0": expected an integer 1-86400$/],
    ] as const) {
      assert.throws(() => loadConfig([], env), (err: unknown) => err instanceof ConfigError && pattern.test(err.message));
    }
  });
});
