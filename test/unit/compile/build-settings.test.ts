// filter.json `build` (build-settings.ts): strict validation with reasons, and the asc flags.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ascFlags } from "../../../controlplane/compile/build-settings.ts";
import { compileRecipe } from "../../../controlplane/compile/compiler.ts";
import { parseManifest } from "../../../controlplane/compile/manifest.ts";

const error = (text: string): string => {
  const r = parseManifest(text);
  assert.equal(r.ok, false, text);
  return r.ok ? "" : r.error;
};

describe("filter.json build", () => {
  test("valid settings are kept as written", () => {
    const build = { optimize: "O3", runtime: "half", noAssert: true, trimExports: false };
    const r = parseManifest(JSON.stringify({ order: 10, build }));
    assert.deepEqual(r, { ok: true, manifest: { order: 10, build } });
  });

  test("a bad key or value is refused with the reason", () => {
    assert.match(error('{"build": {"optimise": "O3"}}'),
      /"build" must be an object with only optimize, runtime, noAssert, trimExports; unknown key "optimise"/);
    assert.match(error('{"build": {"optimize": "O4"}}'), /"optimize" is one of "O0", "O1", "O2", "O3", "Os", "Oz" \(it is "O4"\)/);
    assert.match(error('{"build": {"noAssert": "yes"}}'), /"noAssert" is true or false \(it is "yes"\)/);
    assert.match(error('{"build": "O3"}'), /"build" must be an object/);
  });

  test("the stub runtimes are refused: they never free memory", () => {
    assert.match(error('{"build": {"runtime": "stub"}}'), /not "stub": it never frees memory/);
    assert.match(error('{"build": {"runtime": "none"}}'), /not "none": it never frees memory/);
  });
});

describe("asc flags", () => {
  test("defaults add nothing, so default builds keep their bytes and build keys", () => {
    assert.deepEqual(ascFlags({}), []);
    assert.deepEqual(ascFlags({ optimize: "O0", trimExports: true, runtime: "full" }), []);
    assert.deepEqual(compileRecipe(), ["--use", "abort=abort_proc_exit", "--runtime", "full", "--noColors"]);
    assert.deepEqual(compileRecipe({ optimize: true }).slice(-1), ["-O3"]);
  });

  test("a filter's settings become flags; its optimize wins over the global -O3", () => {
    assert.deepEqual(ascFlags({ optimize: "Oz", noAssert: true }), ["-Oz", "--noAssert"]);
    const recipe = compileRecipe({ optimize: true, build: { optimize: "O1", runtime: "half" } });
    assert.ok(recipe.includes("-O1") && !recipe.includes("-O3"), recipe.join(" "));
    assert.deepEqual(recipe.slice(recipe.indexOf("--runtime"), recipe.indexOf("--runtime") + 2), ["--runtime", "half"]);
  });
});
