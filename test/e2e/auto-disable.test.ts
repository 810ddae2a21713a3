// Runtime failures end to end: a filter that traps in onRequestHeaders (test/fixtures/filters/
// abort-request, on `x-crash: 1`) runs beside add-header in a real Envoy with failure_policy
// FAIL_RELOAD. Envoy reports no NACK for a trap, only stats; its metrics_service sink streams
// them to the control plane, which rolls the filter back (its newest module broke it) or disables
// it (a pinned module fails too). Requests then succeed again with add-header still applied,
// the API shows the health record, and the Envoy process stays up throughout.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { copyFilters, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import type { EnvoyProcess } from "../support/envoy.ts";
import { httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { json, openSse, type SseStream } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";
import { startStack, type Stack } from "../support/stack.ts";

const FILTER = "abort-request";
const THRESHOLD = 3;
const fixture = fs.readFileSync(repoPath("test", "fixtures", "filters", FILTER, "index.ts"), "utf8");
/** The fixture with its crash switch renamed: a good module that ignores `x-crash`. */
const goodSource = fixture.replace('get("x-crash")', 'get("x-crash-disarmed")');

interface Health { runtimeFailures: number; lastFailureAt: string | null; action: "rolled_back" | "disabled" | null; reason: string | null; actedAt: string | null }
interface Detail { enabled: boolean; sha256: string; pinnedSha256?: string | null; health: Health; envoys: { node: string; sha256: string | null }[]; history?: { sha256: string }[] }

describe("automatic response to runtime failures, through a real Envoy", { timeout: 240_000 }, () => {
  let workDir: string;
  let filterDir: string;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let stack: Stack | undefined;
  let ports: ControlPlanePorts;
  let events: SseStream;

  const details = (): string => `--- envoy\n${envoy?.tail(25)}\n--- control plane\n${cp?.tail(30)}`;
  const url = (): string => `http://127.0.0.1:${ports.listener}/headers`;
  const get = (crash: boolean): Promise<HttpResponse> => httpRequest(url(), { headers: crash ? { "x-crash": "1" } : {} });
  const api = async <T>(method: string, p: string, body?: unknown): Promise<{ status: number; json: T }> => {
    const r = await httpRequest(`${cp.adminUrl}${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: body === undefined ? {} : { "content-type": "application/json" } });
    return { status: r.status, json: JSON.parse(r.body) as T };
  };
  const detail = async (): Promise<Detail> => (await api<Detail>("GET", `/api/filters/${FILTER}`)).json;
  const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
    waitFor(probe, { what, timeoutMs, details, signal: envoy.exitSignal });
  /** Envoy runs `sha256` for the filter (its ECDS ACK names it) and a plain request sees the filter. */
  const runs = (sha256: string) => until(`Envoy to run ${FILTER} ${sha256.slice(0, 12)}`, async () => {
    const d = await detail();
    if (!d.envoys.some((e) => e.sha256 === sha256)) return false;
    const r = await get(false);
    return r.status === 200 && r.headers["x-abort-request"] === "ok";
  });
  /**
   * Sends crash requests at a steady trickle (one per 150 ms, bounded by the deadline) until
   * `done` holds. What counts is crashes, not requests: after each crash Envoy refuses requests
   * for its reload backoff (~1 s) and the next one reloads the VM, which crashes again, so the
   * threshold is reached after about THRESHOLD backoffs plus a stats flush.
   */
  const crashUntil = async (what: string, done: (d: Detail) => boolean): Promise<{ firstCrashAt: number; crashes: number; statuses: number[] }> => {
    const firstCrashAt = Date.now();
    const statuses: number[] = [];
    await waitFor(async () => {
      statuses.push((await get(true)).status);
      return done(await detail());
    }, { what, timeoutMs: 30_000, intervalMs: 150, details: () => `${statuses.length} crash requests, statuses ${statuses.join(",")}\n${details()}`, signal: envoy.exitSignal });
    return { firstCrashAt, crashes: statuses.length, statuses };
  };

  before(async () => {
    workDir = makeWorkDir("auto-disable");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    filterDir = path.join(filtersDir, FILTER);
    fs.mkdirSync(filterDir);
    fs.copyFileSync(repoPath("test", "fixtures", "filters", FILTER, "filter.json"), path.join(filterDir, "filter.json"));
    fs.writeFileSync(path.join(filterDir, "index.ts"), goodSource);
    stack = await startStack({
      workDir, filtersDir,
      cpEnv: { CP_AUTO_DISABLE_AFTER: String(THRESHOLD), CP_AUTO_DISABLE_WINDOW: "60" },
      bootstrap: { nodeId: "envoy-health", nodeCluster: "edge" },
      envoy: { concurrency: 1 },
    });
    ({ ports, cp, envoy } = stack);
    events = await openSse(`${cp.adminUrl}/api/events?types=health.*`);
  });

  after(async () => {
    events?.close();
    await stack?.stop();
  });

  it("Envoy streams its stats to the control plane", async () => {
    await until("the Envoy listed as a stats reporter", async () => {
      const h = (await api<{ statsReporters: { node: string; cluster: string }[]; policy: { autoDisableAfter: number } }>("GET", "/api/health")).json;
      assert.equal(h.policy.autoDisableAfter, THRESHOLD);
      return h.statsReporters.some((r) => r.node === "envoy-health" && r.cluster === "edge");
    });
    // reload is the default; add-header is switched to closed to show only reload is watched.
    const set = await api<{ failPolicy: string }>("PUT", `/api/filters/add-header/fail-policy`, { failPolicy: "closed" });
    assert.equal(set.status, 200);
    await until("FAIL_RELOAD and FAIL_CLOSED in Envoy's ECDS config", async () => {
      const dump = JSON.stringify(await envoy.configDump("ecds_filters"));
      return dump.includes("FAIL_RELOAD") && dump.includes("FAIL_CLOSED");
    });
    const watched = (await api<{ filters: Record<string, { watched: boolean }> }>("GET", "/api/health")).json.filters;
    assert.deepEqual([watched[FILTER]?.watched, watched["add-header"]?.watched], [true, false], "only FAIL_RELOAD filters are watched");
    const d = await detail();
    await runs(d.sha256);
    assert.equal(d.health.runtimeFailures, 0);
    assert.equal(d.health.action, null);
  });

  it("a new module that fails at runtime is rolled back to the previous one", async () => {
    const good = (await detail()).sha256;
    fs.writeFileSync(path.join(filterDir, "index.ts"), fixture);
    const bad = await until("the crashing module built", async () => {
      const d = await detail();
      return d.sha256 !== good ? d.sha256 : undefined;
    });
    await runs(bad);
    const { firstCrashAt, crashes, statuses } = await crashUntil("rolled back", (d) => d.health.action === "rolled_back");
    assert.ok(statuses.includes(503), "the crashing module answered 503 (fail closed while reloading)");
    const d = await detail();
    assert.equal(d.pinnedSha256, good, "pinned the previous module");
    assert.equal(d.sha256, good);
    assert.equal(d.enabled, true);
    assert.ok(d.health.runtimeFailures >= THRESHOLD, `runtimeFailures ${d.health.runtimeFailures}`);
    assert.match(d.health.reason ?? "", /went out: pinned the previous module/);
    assert.ok(d.health.lastFailureAt && d.health.actedAt);
    // The same request that crashed now passes through both filters.
    const healthy = await until("crash requests served by the previous module", async () => {
      const r = await get(true);
      return r.status === 200 && r.headers["x-abort-request"] === "ok" && r.headers["x-wasm-filter"] === "add-header" ? Date.now() : undefined;
    });
    const actedAt = Date.parse(d.health.actedAt!);
    console.log(`rollback: ${crashes} crash requests; first failing request -> action ${actedAt - firstCrashAt} ms; action -> first healthy response ${healthy - actedAt} ms; total ${healthy - firstCrashAt} ms`);
    assert.equal(envoy.running, true);
  });

  it("a pinned module that fails too is disabled; requests pass with add-header; enable undoes it", async () => {
    const now = await detail();
    const bad = now.history?.find((m) => m.sha256 !== now.pinnedSha256)?.sha256;
    assert.ok(bad, "the crashing module is retained");
    // The operator forces the crashing module back in.
    assert.equal((await api("POST", `/api/filters/${FILTER}/rollback`, { sha256: bad })).status, 200);
    await runs(bad);
    // Failures within a few seconds of the rollback are not counted (stragglers of the old VM).
    const { firstCrashAt, crashes } = await crashUntil("disabled", (d) => d.health.action === "disabled");
    const d = await detail();
    assert.equal(d.enabled, false);
    assert.match(d.health.reason ?? "", /pinned module .* fails too: disabled abort-request/);
    const healthy = await until("crash requests pass with the filter off", async () => {
      const r = await get(true);
      return r.status === 200 && r.headers["x-abort-request"] === undefined && r.headers["x-wasm-filter"] === "add-header" ? Date.now() : undefined;
    });
    const actedAt = Date.parse(d.health.actedAt!);
    console.log(`disable: ${crashes} crash requests; first failing request -> action ${actedAt - firstCrashAt} ms; action -> first healthy response ${healthy - actedAt} ms; total ${healthy - firstCrashAt} ms`);

    // Alerted through the API: SSE events, Prometheus metrics, and the list view.
    await events.until(() => events.messages.some((m) => m.event === "health.action" && json<{ action: string }>(m).action === "disabled"), "health.action disabled event");
    assert.ok(events.messages.some((m) => m.event === "health.action" && json<{ action: string; filter: string }>(m).action === "rolled_back"));
    assert.ok(events.messages.some((m) => m.event === "health.failures" && json<{ node: string }>(m).node === "envoy-health"));
    const metrics = (await cp.api("/metrics")).body;
    assert.match(metrics, /wasmxds_filter_health_actions_total\{filter="abort-request",action="rolled_back"\} 1/);
    assert.match(metrics, /wasmxds_filter_health_actions_total\{filter="abort-request",action="disabled"\} 1/);
    assert.match(metrics, /wasmxds_filter_runtime_failures_total\{filter="abort-request"\} [1-9]/);
    const listed = (await api<{ name: string; health: Health }[]>("GET", "/api/filters")).json.find((f) => f.name === FILTER);
    assert.equal(listed?.health.action, "disabled");

    // The operator's normal enable undoes it; the record stays.
    assert.equal((await api("POST", `/api/filters/${FILTER}/enable`)).status, 200);
    await until("the filter running again", async () => (await get(false)).headers["x-abort-request"] === "ok");
    assert.equal((await detail()).health.action, "disabled", "the record of the last action stays");
    assert.equal(envoy.running, true, "Envoy stayed up throughout");
    assert.equal(await envoy.stat("server.live"), 1);
  });
});
