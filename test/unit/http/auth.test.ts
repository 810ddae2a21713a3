// The admin API's bearer token (CP_ADMIN_TOKEN) and its answers to client mistakes: always a
// 4xx with a JSON reason, never a 5xx. Real registry, state (a temp file), clients and events.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import pino from "pino";
import { EventBus } from "../../../controlplane/events/bus.ts";
import { createAdminApi } from "../../../controlplane/http/admin-api.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";
import { ClientRegistry } from "../../../controlplane/xds/client-status.ts";

const TOKEN = "s3cret-token-0123456789abcdef";
const log = pino({ level: "silent" });
const MiB = 1024 * 1024;

type App = ReturnType<typeof createAdminApi>;

interface Fixture {
  app: App;
  state: OperatorState;
  stateFile: string;
  /** Every route the app registered, as injectable [method, url] pairs. */
  routes: { method: string; url: string; public: boolean }[];
}

const dirs: string[] = [];
const apps: App[] = [];

async function fixture(token?: string): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-auth-"));
  dirs.push(dir);
  const stateFile = path.join(dir, "state.json");
  const registry = new FilterRegistry();
  const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  registry.buildSucceeded("add-header", bytes, { sha256: createHash("sha256").update(bytes).digest("hex"), rootId: "add-header", buildMs: 1 }, {});
  const state = new OperatorState(stateFile);
  await state.load();
  const events = new EventBus();
  const app = createAdminApi({
    registry, state, clients: new ClientRegistry(events), events,
    snapshot: () => undefined, resourceAt: () => undefined, ready: () => true,
  }, log, token === undefined ? {} : { token });
  const routes: Fixture["routes"] = [];
  // Plugins load at ready(), after this hook is in place, so it sees every route.
  app.addHook("onRoute", (r) => {
    for (const method of [r.method].flat()) {
      if (method === "HEAD" || method === "OPTIONS") continue;
      routes.push({ method, url: r.url.replace(/:[a-zA-Z]+/g, "add-header").replace(/\*$/, "x"), public: r.config?.public === true });
    }
  });
  apps.push(app);
  await app.ready();
  return { app, state, stateFile, routes };
}

after(async () => {
  for (const app of apps) await app.close();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function errorOf(res: LightMyRequestResponse): string {
  assert.match(String(res.headers["content-type"]), /application\/json/, `JSON reason for ${res.statusCode}: ${res.body.slice(0, 200)}`);
  const body = JSON.parse(res.body) as { error?: unknown };
  assert.equal(typeof body.error, "string", `an {error} reason: ${res.body.slice(0, 200)}`);
  assert.ok((body.error as string).length > 0);
  return body.error as string;
}

const bearer = (token = TOKEN) => ({ authorization: `Bearer ${token}` });

describe("admin API without a token (loopback default)", () => {
  test("routes answer without Authorization", async () => {
    const { app } = await fixture();
    assert.equal((await app.inject({ url: "/api/filters" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/metrics" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/healthz" })).statusCode, 200);
  });
});

describe("admin API with CP_ADMIN_TOKEN", () => {
  let f: Fixture;
  before(async () => {
    f = await fixture(TOKEN);
  });

  test("/healthz stays open", async () => {
    const res = await f.app.inject({ url: "/healthz" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(res.body), { status: "ok" });
  });

  test("/api and /metrics without a token: 401, WWW-Authenticate: Bearer, a JSON reason", async () => {
    for (const url of ["/api/filters", "/api/filters/add-header", "/api/clients", "/api/snapshot", "/metrics"]) {
      const res = await f.app.inject({ url });
      assert.equal(res.statusCode, 401, url);
      assert.match(String(res.headers["www-authenticate"]), /^Bearer\b/, url);
      assert.match(errorOf(res), /Authorization: Bearer/, url);
    }
  });

  test("a wrong token, a token of another length, another scheme or a malformed header: 401", async () => {
    const wrong = [
      `Bearer ${TOKEN.slice(0, -1)}x`,
      `Bearer ${TOKEN}x`,
      "Bearer x",
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString("base64")}`,
      TOKEN,
      "Bearer",
      `Bearer ${TOKEN} extra`,
    ];
    for (const authorization of wrong) {
      const res = await f.app.inject({ url: "/api/filters", headers: { authorization } });
      assert.equal(res.statusCode, 401, authorization);
      assert.match(String(res.headers["www-authenticate"]), /^Bearer\b/);
      errorOf(res);
    }
    const invalid = await f.app.inject({ url: "/api/filters", headers: bearer("not-the-token") });
    assert.match(String(invalid.headers["www-authenticate"]), /error="invalid_token"/);
  });

  test("the right token opens /api and /metrics (scheme name case-insensitive)", async () => {
    assert.equal((await f.app.inject({ url: "/api/filters", headers: bearer() })).statusCode, 200);
    assert.equal((await f.app.inject({ url: "/api/filters", headers: { authorization: `bearer ${TOKEN}` } })).statusCode, 200);
    const metrics = await f.app.inject({ url: "/metrics", headers: bearer() });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /^# (HELP|TYPE) /m);
  });

  test("an unauthenticated change is refused before it touches state", async () => {
    const res = await f.app.inject({ method: "POST", url: "/api/filters/add-header/disable" });
    assert.equal(res.statusCode, 401);
    assert.deepEqual(f.state.choice("add-header"), {});
    assert.equal(fs.existsSync(f.stateFile), false, "nothing persisted");
    const ok = await f.app.inject({ method: "POST", url: "/api/filters/add-header/disable", headers: bearer() });
    assert.equal(ok.statusCode, 200);
    assert.equal(f.state.choice("add-header").enabled, false);
    await f.app.inject({ method: "POST", url: "/api/filters/add-header/enable", headers: bearer() });
  });

  test("deny by default: every registered route but the public ones needs the token", async () => {
    assert.ok(f.routes.length >= 10, `routes seen: ${f.routes.length}`);
    const open: string[] = [];
    for (const r of f.routes) {
      const res = await f.app.inject({ method: r.method as "GET", url: r.url });
      if (res.statusCode !== 401) open.push(`${r.method} ${r.url} -> ${res.statusCode}`);
      else errorOf(res);
    }
    const expectedOpen = f.routes.filter((r) => r.public || r.url === "/healthz" || r.url === "/docs" || r.url.startsWith("/docs/"));
    assert.deepEqual(open.map((o) => o.split(" -> ")[0]).sort(), expectedOpen.map((r) => `${r.method} ${r.url}`).sort(), open.join("\n"));
    assert.ok(!open.some((o) => /^\S+ \/(api|metrics)/.test(o)), `no /api or /metrics route is open:\n${open.join("\n")}`);
  });

  test("an unknown path is 401 without the token (no probing), 404 with it", async () => {
    assert.equal((await f.app.inject({ url: "/api/nope" })).statusCode, 401);
    const res = await f.app.inject({ url: "/api/nope", headers: bearer() });
    assert.equal(res.statusCode, 404);
    errorOf(res);
  });

  test("the token is checked before the body is read: a huge unauthenticated body is a 401", async () => {
    const res = await f.app.inject({
      method: "PUT", url: "/api/filters/add-header/configuration",
      headers: { "content-type": "application/json" }, payload: JSON.stringify({ configuration: "x".repeat(2 * MiB) }),
    });
    assert.equal(res.statusCode, 401);
  });
});

describe("client mistakes get a 4xx with a reason, never a 5xx", () => {
  let f: Fixture;
  before(async () => {
    f = await fixture(TOKEN);
  });

  const send = (method: string, url: string, payload?: string | Buffer, contentType?: string) =>
    f.app.inject({
      method: method as "PUT",
      url,
      headers: { ...bearer(), ...(contentType ? { "content-type": contentType } : {}) },
      ...(payload === undefined ? {} : { payload }),
    });

  test("a body over 1 MiB: 413 with a reason", async () => {
    const res = await send("PUT", "/api/filters/add-header/configuration", JSON.stringify({ configuration: "x".repeat(MiB + 10) }), "application/json");
    assert.equal(res.statusCode, 413);
    assert.match(errorOf(res), /body|large|limit/i);
  });

  test("a module upload over its limit: 413 with a reason", async () => {
    const res = await send("PUT", "/api/filters/add-header/module", Buffer.alloc(8 * MiB + 1), "application/wasm");
    assert.equal(res.statusCode, 413);
    errorOf(res);
  });

  test("malformed JSON: 400 with a reason", async () => {
    for (const body of ["{bad", "{\"configuration\": ", "[1,2", "\u0000", "{\"configuration\": \"a\"} trailing"]) {
      const res = await send("PUT", "/api/filters/add-header/configuration", body, "application/json");
      assert.equal(res.statusCode, 400, JSON.stringify(body));
      assert.match(errorOf(res), /JSON|body/i);
    }
  });

  test("every other kind of bad request: 4xx with a JSON reason", async () => {
    const cases: [string, string, (string | Buffer)?, string?][] = [
      ["PUT", "/api/filters/add-header/configuration", "", "application/json"],
      ["PUT", "/api/filters/add-header/configuration", "configuration=x", "application/x-www-form-urlencoded"],
      ["PUT", "/api/filters/add-header/configuration", "plain", "text/plain"],
      ["PUT", "/api/filters/add-header/configuration", JSON.stringify({ configuration: 5 }), "application/json"],
      ["PUT", "/api/filters/add-header/configuration", JSON.stringify({ configuration: "x", extra: 1 }), "application/json"],
      ["PUT", "/api/filters/add-header/configuration", JSON.stringify("just a string"), "application/json"],
      ["PUT", "/api/filters/add-header/configuration", "null", "application/json"],
      ["PUT", "/api/filters/add-header/order", JSON.stringify({ order: "first" }), "application/json"],
      ["PUT", "/api/filters/add-header/order", JSON.stringify({ order: 1.5 }), "application/json"],
      ["PUT", "/api/filters/add-header/order", JSON.stringify({ order: 1e300 }), "application/json"],
      ["PUT", "/api/filters/add-header/fail-policy", JSON.stringify({ failPolicy: "sometimes" }), "application/json"],
      ["PUT", "/api/filters/add-header/targets", JSON.stringify({ clusters: [1] }), "application/json"],
      ["PUT", "/api/filters/add-header/targets", JSON.stringify({ clusters: "edge" }), "application/json"],
      ["POST", "/api/filters/add-header/rollback", JSON.stringify({ sha256: "nothex" }), "application/json"],
      ["POST", "/api/filters/add-header/rollback", JSON.stringify({ sha256: "a".repeat(64) }), "application/json"],
      ["POST", "/api/filters/add-header/disable", JSON.stringify({ unexpected: true }), "application/json"],
      ["POST", "/api/filters/add-header/disable", "{", "application/json"],
      ["POST", "/api/filters/Bad%20Name/disable"],
      ["POST", "/api/filters/..%2F..%2Fetc/disable"],
      ["POST", `/api/filters/${"a".repeat(300)}/disable`],
      ["POST", "/api/filters/nope/disable"],
      ["GET", "/api/filters/%E0%A4%A"],
      ["PUT", "/api/filters/add-header/module", Buffer.from("not wasm"), "application/wasm"],
      ["PUT", "/api/filters/add-header/module", Buffer.alloc(0), "application/wasm"],
      ["PUT", "/api/filters/add-header/module?rootId=", Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), "application/wasm"],
      ["DELETE", "/api/filters"],
      ["PATCH", "/api/filters/add-header"],
    ];
    for (const [method, url, payload, contentType] of cases) {
      const res = await send(method, url, payload, contentType);
      const what = `${method} ${url} ${contentType ?? ""} ${payload === undefined ? "" : String(payload).slice(0, 40)} -> ${res.statusCode} ${res.body.slice(0, 200)}`;
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, what);
      errorOf(res);
    }
    assert.deepEqual(f.state.choice("add-header"), {}, "no bad request changed state");
  });
});
