import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  isValidFilterName, parseManifest, readManifest, rootIdFromSource, rootIdsFromSource,
} from "../../../controlplane/compile/manifest.ts";

function errorOf(text: string): string {
  const result = parseManifest(text);
  if (result.ok) assert.fail("manifest unexpectedly accepted");
  return result.error;
}

describe("parseManifest", () => {
  test("accepts every field", () => {
    assert.deepEqual(
      parseManifest(`{"order": 10, "enabled": false, "configuration": "x=1", "rootId": "r", "failPolicy": "reload"}`),
      { ok: true, manifest: { order: 10, enabled: false, configuration: "x=1", rootId: "r", failPolicy: "reload" } },
    );
    assert.deepEqual(parseManifest("{}"), { ok: true, manifest: {} });
  });

  test("capabilities: a list of known group names", () => {
    assert.deepEqual(parseManifest(`{"capabilities": ["http_call", "metrics"]}`), { ok: true, manifest: { capabilities: ["http_call", "metrics"] } });
    assert.deepEqual(parseManifest(`{"capabilities": []}`), { ok: true, manifest: { capabilities: [] } });
  });

  test("capabilities: unknown names, non-lists and duplicates are errors listing the allowed names", () => {
    const unknown = errorOf(`{"capabilities": ["http_call", "network"]}`);
    assert.match(unknown, /^filter\.json: "capabilities" must be a list of capability names \(allowed: http_call, grpc, properties, shared_data, shared_queue, metrics, foreign_function, wasi_env, wasi_fs, wasi_clock_random\); unknown: "network"/);
    assert.match(errorOf(`{"capabilities": "http_call"}`), /"capabilities" must be a list of capability names \(allowed: http_call/);
    assert.match(errorOf(`{"capabilities": [1]}`), /unknown: 1/);
    assert.match(errorOf(`{"capabilities": ["toString"]}`), /unknown: "toString"/);
    assert.match(errorOf(`{"capabilities": ["metrics", "metrics"]}`), /without duplicates/);
  });

  test("rejects unknown keys, naming the allowed ones", () => {
    assert.equal(errorOf(`{"ordr": 1}`), `filter.json: unknown key "ordr" (allowed: order, enabled, configuration, rootId, capabilities, failPolicy, build, targets)`);
    assert.match(errorOf(`{"toString": 1}`), /unknown key "toString"/);
  });

  test("rejects wrong types", () => {
    assert.equal(errorOf(`{"order": 1.5}`), `filter.json: "order" must be an integer, got 1.5`);
    assert.equal(errorOf(`{"order": "1"}`), `filter.json: "order" must be an integer, got "1"`);
    assert.equal(errorOf(`{"enabled": "yes"}`), `filter.json: "enabled" must be true or false, got "yes"`);
    assert.equal(errorOf(`{"configuration": {"a": 1}}`), `filter.json: "configuration" must be a string, got an object`);
    assert.equal(errorOf(`{"rootId": ""}`), `filter.json: "rootId" must be a root id (1-128 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-'), got ""`);
    assert.equal(errorOf(`{"failPolicy": "skip"}`), `filter.json: "failPolicy" must be one of "open", "closed", "reload", got "skip"`);
    assert.equal(errorOf(`[1]`), "filter.json: must be a JSON object, got an array");
    assert.equal(errorOf(`null`), "filter.json: must be a JSON object, got null");
  });

  test("a root id outside the safe charset is refused (NUL, newline, space, too long)", () => {
    for (const bad of ["a\u0000b", "a\nb", "a b", "x".repeat(129), "é"]) {
      assert.match(errorOf(JSON.stringify({ rootId: bad })), /"rootId" must be a root id \(1-128 characters/, JSON.stringify(bad));
    }
    for (const good of ["add-header", "my_root.v2:x", "x".repeat(128)]) {
      const r = parseManifest(JSON.stringify({ rootId: good }));
      assert.ok(r.ok && r.manifest.rootId === good, good);
    }
  });

  test("reports bad JSON with the parser's message and a line", () => {
    const error = errorOf(`{\n  "order": 1,\n  "enabled": true,\n}`);
    assert.match(error, /^filter\.json: invalid JSON: /);
    assert.match(error, /line 4/);
  });

  test("readManifest: a missing file is an empty manifest", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "wasm-xds-manifest-"));
    try {
      assert.deepEqual(await readManifest(dir), { ok: true, manifest: {} });
      await writeFile(path.join(dir, "filter.json"), `{"order": 3}`);
      assert.deepEqual(await readManifest(dir), { ok: true, manifest: { order: 3 } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("rootIdFromSource", () => {
  test("reads the second argument of registerRootContext", () => {
    const src = `registerRootContext((context_id: u32): RootContext => { return new Root(context_id, f(1, 2)); }, "add-header");`;
    assert.equal(rootIdFromSource(src), "add-header");
    assert.equal(rootIdFromSource(`registerRootContext(\n  make,\n  'single'\n);`), "single");
    assert.equal(rootIdFromSource("registerRootContext(make, `tpl`);"), "tpl");
  });

  test("ignores commented-out calls and strings that look like code", () => {
    const src = [
      `// registerRootContext(make, "line-comment");`,
      `/* registerRootContext(make, "block-comment"); */`,
      `const s = "not a // comment, registerRootContext(x, \\"in-string\\")";`,
      `registerRootContext(make, "real"); // trailing`,
    ].join("\n");
    assert.equal(rootIdFromSource(src), "real");
  });

  test("is undefined when there is no literal root id", () => {
    assert.equal(rootIdFromSource(`export * from "@solo-io/proxy-runtime/proxy";`), undefined);
    assert.equal(rootIdFromSource(`registerRootContext(make, ROOT_ID);`), undefined);
    assert.equal(rootIdFromSource("registerRootContext(make, `a${b}`);"), undefined);
    assert.equal(rootIdFromSource(`registerRootContext(make`), undefined);
  });

  test("rootIdsFromSource lists every registration", () => {
    assert.deepEqual(rootIdsFromSource(`registerRootContext(a, "one"); registerRootContext(b, "two");`), ["one", "two"]);
  });
});

describe("isValidFilterName", () => {
  test("accepts lowercase names and rejects the rest", () => {
    for (const ok of ["add-header", "a", "0", "rate_limit-2", "a".repeat(63)]) assert.ok(isValidFilterName(ok), ok);
    for (const bad of ["", "_lib", ".hidden", "-x", "Upper", "a b", "a/b", "a".repeat(64), "ü"]) {
      assert.ok(!isValidFilterName(bad), bad);
    }
  });
});
