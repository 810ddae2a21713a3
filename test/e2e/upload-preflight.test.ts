// Issue 10 item 8: an uploaded module is started (pre-flight) under the requested root id before
// it is accepted. Uploading a valid module under a root id it never registers used to answer
// 200, after which every request through Envoy got 500 and later listener changes were NACKed.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { copyFilters } from "../support/controlplane.ts";
import { httpGet, httpRequest } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

describe("module upload pre-flight through a real Envoy", { timeout: 180_000 }, () => {
  let stack: Stack;
  let wasm: Buffer;
  const through = () => httpGet(`http://127.0.0.1:${stack.ports.listener}/headers`);
  const upload = (query: string) => httpRequest(`${stack.cp.adminUrl}/api/filters/uploaded/module${query}`, {
    method: "PUT", body: wasm, headers: { "content-type": "application/wasm" }, timeoutMs: 60_000,
  });

  before(async () => {
    const workDir = makeWorkDir("upload-preflight");
    stack = await startStack({ workDir, filtersDir: copyFilters(path.join(workDir, "filters")) });
    const details = () => stack.details();
    const seed = await waitFor(async () => (await stack.cp.filter("add-header"))?.sha256 ?? undefined,
      { what: "add-header built", timeoutMs: 30_000, details });
    await waitFor(async () => (await through()).headers["x-wasm-filter"] === "add-header",
      { what: "add-header running in Envoy", timeoutMs: 30_000, details });
    // A valid module (add-header's, which registers root id "add-header"), fetched as Envoy does.
    wasm = Buffer.from(await (await fetch(`http://127.0.0.1:${stack.ports.modules}/modules/${seed}.wasm`)).arrayBuffer());
  });

  after(async () => {
    await stack?.stop();
  });

  it("a valid module under a root id it does not register: 400 with the reason; Envoy keeps answering", async () => {
    const res = await upload("?rootId=not-registered");
    assert.equal(res.status, 400, res.body);
    const error = (JSON.parse(res.body) as { error: string }).error;
    assert.match(error, /^uploaded: the module does not start with root id "not-registered": /);
    assert.match(error, /Missing root context factory for root id: not-registered/, "the module's own reason");
    assert.equal(await stack.cp.filter("uploaded"), undefined, "nothing registered, nothing pushed");
    // Without a root id the filter name is used, which add-header's module does not register either.
    assert.equal((await upload("")).status, 400);
    for (let i = 0; i < 20; i++) {
      const r = await through();
      assert.equal(r.status, 200, `request ${i} through the listener: ${r.status} ${r.body.slice(0, 200)}\n${stack.details()}`);
      assert.equal(r.headers["x-wasm-filter"], "add-header");
    }
    const nacks = (await stack.cp.clients()).flatMap((c) => Object.values(c.types).filter((t) => t.lastNack !== null));
    assert.deepEqual(nacks, [], "Envoy NACKed nothing");
  });

  it("the same module under its own root id: 200, pushed and running", async () => {
    const res = await upload("?rootId=add-header");
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { status: string }).status, "ok");
    // Two filters now add x-wasm-filter: add-header and the uploaded copy of it.
    await waitFor(async () => {
      const r = await through();
      return r.status === 200 && r.headers["x-wasm-filter"] === "add-header, add-header";
    }, { what: "the uploaded module running beside add-header", timeoutMs: 30_000, details: () => stack.details() });
  });
});
