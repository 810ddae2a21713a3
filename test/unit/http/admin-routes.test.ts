// Admin API shape: 405 with Allow for undeclared methods on known paths, the OpenAPI request
// body of the module upload, and the root id charset of uploads (issue 10, items 8 and 9).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { EventBus } from "../../../controlplane/events/bus.ts";
import { createAdminApi } from "../../../controlplane/http/admin-api.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";
import { ClientRegistry } from "../../../controlplane/xds/client-status.ts";

type App = ReturnType<typeof createAdminApi>;

describe("admin API routes", () => {
  let app: App;
  let dir: string;
  let state: OperatorState;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-routes-"));
    const registry = new FilterRegistry();
    const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    registry.buildSucceeded("add-header", bytes, { sha256: createHash("sha256").update(bytes).digest("hex"), rootId: "add-header", buildMs: 1 }, {});
    state = new OperatorState(path.join(dir, "state.json"));
    await state.load();
    const events = new EventBus();
    app = createAdminApi({
      registry, state, clients: new ClientRegistry(events), events,
      snapshot: () => undefined, resourceAt: () => undefined, ready: () => true,
    }, pino({ level: "silent" }));
    await app.ready();
  });
  after(async () => {
    await app.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("an undeclared method on a known path: 405 with the declared methods in Allow", async () => {
    for (const [method, url, allow] of [
      ["DELETE", "/api/filters", "GET, HEAD"],
      ["PATCH", "/api/filters/x", "GET, HEAD"],
      ["GET", "/api/filters/add-header/module", "PUT"],
      ["POST", "/api/filters/add-header/configuration?x=1", "DELETE, PUT"],
      ["PUT", "/api/filters/add-header/enable", "POST"],
    ] as const) {
      const res = await app.inject({ method, url });
      assert.equal(res.statusCode, 405, `${method} ${url}: ${res.body}`);
      assert.equal(res.headers.allow, allow, `${method} ${url}`);
      assert.match((res.json() as { error: string }).error, new RegExp(`^${method} is not allowed on /api/filters`));
    }
  });

  test("an unknown path is still 404", async () => {
    for (const url of ["/api/nothing", "/api/filters/a/b/c", "/api/filters/add-header/enable/extra"]) {
      const res = await app.inject({ method: "GET", url });
      assert.equal(res.statusCode, 404, url);
      assert.equal(res.headers.allow, undefined);
    }
    // A declared method refused by the router for another reason (parameter too long) is not a 405.
    assert.notEqual((await app.inject({ method: "POST", url: `/api/filters/${"a".repeat(300)}/disable` })).statusCode, 405);
  });

  test("the OpenAPI document declares the module upload's request body (raw bytes)", async () => {
    const doc = (await app.inject({ method: "GET", url: "/docs/json" })).json() as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    };
    const put = doc.paths["/api/filters/{name}/module"]?.put;
    assert.ok(put?.requestBody, "requestBody present");
    for (const type of ["application/wasm", "application/octet-stream"]) {
      assert.deepEqual(put.requestBody.content[type]?.schema, { type: "string", format: "binary" }, type);
    }
    assert.ok(doc.paths["/api/filters/{name}/order"]?.put?.requestBody?.content["application/json"], "JSON bodies still documented");
  });

  test("upload root ids outside the safe charset: 400 with the rule (NUL, newline, space, too long, empty)", async () => {
    const wasm = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    for (const rootId of ["a\u0000b", "a\nb", "a b", "x".repeat(129), "", "é"]) {
      const res = await app.inject({
        method: "PUT", url: `/api/filters/up/module?rootId=${encodeURIComponent(rootId)}`,
        headers: { "content-type": "application/wasm" }, payload: wasm,
      });
      assert.equal(res.statusCode, 400, JSON.stringify(rootId));
      assert.match((res.json() as { error: string }).error, /rootId must match pattern/, JSON.stringify(rootId));
    }
    assert.deepEqual(state.choice("up"), {});
  });
});
