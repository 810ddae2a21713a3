import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, beforeEach, describe, test } from "node:test";
import pino from "pino";
import { createModuleServer } from "../../../controlplane/http/module-server.ts";
import { FetchTracker } from "../../../controlplane/registry/fetch-tracker.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { waitFor } from "../../support/wait.ts";

const log = pino({ level: "silent" });

/** Distinct module bytes (a Wasm header plus a marker) and their real sha256. */
function module(marker: string): { bytes: Uint8Array; sha256: string } {
  const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...Buffer.from(marker)]);
  return { bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}

function add(registry: FilterRegistry, name: string, m: { bytes: Uint8Array; sha256: string }): void {
  registry.buildSucceeded(name, m.bytes, { sha256: m.sha256, rootId: name, buildMs: 1 }, {});
}

describe("module server", () => {
  let registry: FilterRegistry;
  let fetches: FetchTracker;
  let app: ReturnType<typeof createModuleServer>;
  const apps: ReturnType<typeof createModuleServer>[] = [];

  beforeEach(async () => {
    registry = new FilterRegistry();
    fetches = new FetchTracker();
    app = createModuleServer(registry, fetches, log);
    apps.push(app);
    await app.ready();
  });

  after(async () => {
    for (const a of apps) await a.close();
  });

  const get = (url: string) => app.inject({ method: "GET", url });

  test("GET of a held module returns its exact bytes, immutable and tagged by sha256", async () => {
    const m = module("first");
    add(registry, "f", m);
    const res = await get(`/modules/${m.sha256}.wasm`);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(new Uint8Array(res.rawPayload), m.bytes);
    assert.equal(res.headers["content-type"], "application/wasm");
    assert.match(String(res.headers["cache-control"]), /\bimmutable\b/);
    assert.equal(res.headers["etag"], `"${m.sha256}"`);
    assert.equal(Number(res.headers["content-length"]), m.bytes.byteLength);
  });

  test("a module whose backing buffer is larger than the module is served exactly", async () => {
    // The registry may hold a view into a larger buffer (e.g. a worker's transfer).
    const m = module("view");
    const backing = new Uint8Array(m.bytes.byteLength + 32).fill(0xee);
    backing.set(m.bytes, 16);
    const view = backing.subarray(16, 16 + m.bytes.byteLength);
    registry.buildSucceeded("f", view, { sha256: m.sha256, rootId: "f", buildMs: 1 }, {});
    const res = await get(`/modules/${m.sha256}.wasm`);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(new Uint8Array(res.rawPayload), m.bytes);
  });

  test("HEAD returns the same headers and no body", async () => {
    const m = module("head");
    add(registry, "f", m);
    const res = await app.inject({ method: "HEAD", url: `/modules/${m.sha256}.wasm` });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["content-type"], "application/wasm");
    assert.match(String(res.headers["cache-control"]), /\bimmutable\b/);
    assert.equal(res.headers["etag"], `"${m.sha256}"`);
    assert.equal(res.rawPayload.byteLength, 0);
  });

  test("HEAD does not count as a fetch", async () => {
    const m = module("head-no-fetch");
    add(registry, "f", m);
    const res = await app.inject({ method: "HEAD", url: `/modules/${m.sha256}.wasm?node=abc` });
    assert.equal(res.statusCode, 200);
    assert.equal(fetches.state("abc", m.sha256, 0), "none");
  });

  test("an unknown sha256 is 404", async () => {
    add(registry, "f", module("held"));
    const res = await get(`/modules/${"0".repeat(64)}.wasm`);
    assert.equal(res.statusCode, 404);
    assert.notEqual(res.headers["content-type"], "application/wasm");
  });

  test("malformed module names are 404, never a file-system lookup", async () => {
    const m = module("held");
    add(registry, "f", m);
    const urls = [
      `/modules/${m.sha256.toUpperCase()}.wasm`, // uppercase hex
      `/modules/${m.sha256.slice(0, 63)}.wasm`, // short hash
      `/modules/${m.sha256}0.wasm`, // long hash
      `/modules/${m.sha256}`, // no .wasm suffix
      `/modules/${m.sha256}.wasm.gz`,
      `/modules/${m.sha256}.WASM`,
      "/modules/x.wasm",
      "/modules/../../etc/passwd",
      "/modules/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "/modules/%2e%2e%2f",
      `/modules/%2e%2e%2f${m.sha256}.wasm`,
      `/modules/${m.sha256}.wasm%00`,
      "/modules/",
      "/modules",
      `/${m.sha256}.wasm`,
    ];
    for (const url of urls) {
      const res = await get(url);
      assert.equal(res.statusCode, 404, url);
      assert.notEqual(res.headers["content-type"], "application/wasm", url);
      assert.ok(!res.rawPayload.includes(Buffer.from(m.bytes)), `${url} leaked module bytes`);
    }
  });

  test("four builds per filter stay servable; the oldest of five is dropped", async () => {
    const builds = [1, 2, 3, 4, 5].map((i) => module(`build-${i}`));
    for (const b of builds) add(registry, "f", b);
    assert.equal((await get(`/modules/${builds[0]!.sha256}.wasm`)).statusCode, 404, "oldest build evicted");
    for (const b of builds.slice(1)) {
      const res = await get(`/modules/${b.sha256}.wasm`);
      assert.equal(res.statusCode, 200, `build ${b.sha256} retained`);
      assert.deepEqual(new Uint8Array(res.rawPayload), b.bytes);
    }
  });

  test("a removed filter's modules are 404; another filter's are still served", async () => {
    const a1 = module("a1");
    const a2 = module("a2");
    const b = module("b");
    add(registry, "a", a1);
    add(registry, "a", a2);
    add(registry, "b", b);
    registry.removed("a");
    assert.equal((await get(`/modules/${a1.sha256}.wasm`)).statusCode, 404);
    assert.equal((await get(`/modules/${a2.sha256}.wasm`)).statusCode, 404);
    assert.equal((await get(`/modules/${b.sha256}.wasm`)).statusCode, 200);
  });

  test("GET ?node= records a completed fetch for that node and module", async () => {
    const m = module("tracked");
    add(registry, "f", m);
    const since = Date.now();
    const completed: [string, string][] = [];
    let otherNode = 0;
    fetches.onCompleted("abc", (node, sha) => completed.push([node, sha]));
    fetches.onCompleted("other-node", () => otherNode++);
    assert.equal(fetches.state("abc", m.sha256, 0), "none");
    const res = await get(`/modules/${m.sha256}.wasm?node=abc`);
    assert.equal(res.statusCode, 200);
    // Completion is recorded when the response closes, which may trail inject()'s resolution.
    await waitFor(() => fetches.state("abc", m.sha256, 0) === "done", { timeoutMs: 2000, what: "fetch recorded as done" });
    assert.equal(fetches.state("abc", m.sha256, since), "done");
    assert.deepEqual(completed, [["abc", m.sha256]]);
    assert.equal(fetches.state("other-node", m.sha256, 0), "none", "only the named node");
    assert.equal(otherNode, 0, "other nodes' listeners are not woken");
  });

  test("a 404 does not record a fetch", async () => {
    const sha = "0".repeat(64);
    const res = await get(`/modules/${sha}.wasm?node=abc`);
    assert.equal(res.statusCode, 404);
    assert.equal(fetches.state("abc", sha, 0), "none");
  });
});

describe("module server over a real socket", () => {
  // A module larger than loopback's socket buffers, so an abort lands mid-transfer.
  const big = new Uint8Array(64 * 1024 * 1024).fill(7);
  const bigSha = createHash("sha256").update(big).digest("hex");
  let fetches: FetchTracker;
  let app: ReturnType<typeof createModuleServer>;
  let base: string;
  let ended: number;

  beforeEach(async () => {
    const registry = new FilterRegistry();
    registry.buildSucceeded("big", big, { sha256: bigSha, rootId: "big", buildMs: 1 }, {});
    fetches = new FetchTracker();
    ended = 0;
    fetches.onCompleted("n1", () => ended++);
    app = createModuleServer(registry, fetches, log);
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await app?.close();
  });

  test("a completed download counts as done", async () => {
    const res = await fetch(`${base}/modules/${bigSha}.wasm?node=n1`);
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, big.byteLength);
    await waitFor(() => ended === 1, { timeoutMs: 5000, what: "the fetch to end" });
    assert.equal(fetches.state("n1", bigSha, 0), "done");
    await app.close();
  });

  test("a download the client aborts mid-transfer does not count as done", async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${base}/modules/${bigSha}.wasm?node=n1`, (res) => {
        res.once("data", () => {
          assert.equal(fetches.state("n1", bigSha, 0), "in-flight");
          req.destroy();
          resolve();
        });
      });
      req.on("error", (err) => {
        if (!req.destroyed) reject(err);
      });
    });
    await waitFor(() => ended === 1, { timeoutMs: 5000, what: "the aborted fetch to end" });
    // Not in flight any more, and not "done": Envoy does not have the module.
    assert.equal(fetches.state("n1", bigSha, 0), "none");
    await app.close();
  });
});

describe("module server: ?node= values cannot grow the fetch tracker", () => {
  test("thousands of unique and huge node values over real HTTP leave it bounded; a live node is still tracked", async () => {
    const registry = new FilterRegistry();
    const m = module("flood");
    add(registry, "f", m);
    const fetches = new FetchTracker();
    // The live Envoy: its ECDS delivery subscribes, as a stream does.
    const woken: string[] = [];
    const unsubscribe = fetches.onCompleted("envoy-live", (node) => void woken.push(node));
    const server = createModuleServer(registry, fetches, log);
    await server.listen({ host: "127.0.0.1", port: 0 });
    const base = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const getOne = (node: string) => new Promise<number>((resolve, reject) => {
      http.get(`${base}/modules/${m.sha256}.wasm?node=${encodeURIComponent(node)}`, { agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      }).on("error", reject);
    });
    try {
      const statuses: number[] = [];
      const UNIQUE = 3000;
      const HUGE = 200;
      for (let batch = 0; batch < UNIQUE + HUGE; batch += 100) {
        statuses.push(...await Promise.all(Array.from({ length: 100 }, (_, i) => {
          const n = batch + i;
          // ~15 KB: under Node's 16 KB header limit, far over the tracker's cap.
          return getOne(n < UNIQUE ? `stranger-${n}` : `${n}-${"h".repeat(15_000)}`);
        })));
      }
      assert.equal(statuses.length, UNIQUE + HUGE);
      assert.ok(statuses.every((s) => s === 200), "every download is still served");
      assert.equal(await getOne("envoy-live"), 200);
      await waitFor(() => fetches.state("envoy-live", m.sha256, 0) === "done", { timeoutMs: 5000, what: "the live node's fetch recorded" });
      assert.equal(fetches.size, 1, "only the live node's download is kept");
      assert.equal(fetches.nodes, 1);
      assert.deepEqual(woken, ["envoy-live"]);
    } finally {
      unsubscribe();
      agent.destroy();
      await server.close();
    }
  });
});
