// Filters added while the control plane was down reach a real Envoy after the restart (issue 10,
// item 2). The reconnecting Envoy's first requests carry the versions it holds and no nonce; a
// named type's version proves only what that Envoy was sent, so new names must be answered.
// Seen before the fix (SotW): the new ECDS names were never answered, the listener stayed
// warming, and after Envoy's init fetch timeout every request got 500, indefinitely.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { AdsApiType } from "../support/bootstrap.ts";
import {
  allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess,
} from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

const MODES: { label: string; apiType: AdsApiType }[] = [
  { label: "ADS, state of the world", apiType: "GRPC" },
  { label: "ADS, delta", apiType: "DELTA_GRPC" },
];
/** New filters written while the control plane is down (one healed by luck before; four did not). */
const ADDED = ["late-1", "late-2", "late-3", "late-4"];

interface Echoed {
  headers: Record<string, string>;
}

/** A renamed copy of the seed filter: its own root id and its own request header. */
function addFilter(filtersDir: string, name: string): void {
  const seed = fs.readFileSync(path.join(filtersDir, "add-header", "index.ts"), "utf8");
  const dir = path.join(filtersDir, name);
  fs.mkdirSync(dir);
  const source = seed.replaceAll("x-wasm-processed", `x-${name}-processed`).replace(/"add-header"\);\s*$/, `"${name}");\n`);
  assert.notEqual(source, seed, "the seed filter's root id and header were replaced");
  fs.writeFileSync(path.join(dir, "index.ts"), source);
}

for (const mode of MODES) describe(`filters added while the control plane was down (${mode.label})`, { timeout: 120_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let stateFile: string;
  let echo: EchoUpstream;
  let ports: ControlPlanePorts;
  let cp: ControlPlaneProcess | undefined;
  let envoy: EnvoyProcess;

  const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(30)}\n--- control plane\n${cp?.tail(30)}`;
  const get = (): Promise<HttpResponse> => httpGet(`http://127.0.0.1:${ports.listener}/headers`);
  const start = async (): Promise<ControlPlaneProcess> =>
    (cp = await startControlPlane({ ports, filtersDir, stateFile, upstreamPort: echo.port, workDir }));

  before(async () => {
    workDir = makeWorkDir(`restart-new-filters-${mode.apiType}`);
    filtersDir = copyFilters(path.join(workDir, "filters"));
    stateFile = path.join(workDir, "state.json");
    [ports, echo] = await Promise.all([allocatePorts(), startEchoUpstream()]);
    await start();
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds, apiType: mode.apiType }, workDir });
    await envoy.waitReady(30_000);
  });

  after(async () => {
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("the restarted control plane delivers every new filter and no request fails for long", async () => {
    await waitFor(async () => {
      const r = await get();
      return r.status === 200 && (JSON.parse(r.body) as Echoed).headers["x-wasm-processed"] === "yes";
    }, { what: "the seed filter to run", timeoutMs: 20_000, details, signal: envoy.exitSignal });

    await cp!.kill("SIGKILL");
    for (const name of ADDED) addFilter(filtersDir, name);
    await start();

    // Every filter runs on one request: the listener with the new filters went live.
    const statuses = new Map<number, number>();
    await waitFor(async () => {
      const r = await get();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status !== 200) return false;
      const h = (JSON.parse(r.body) as Echoed).headers;
      return h["x-wasm-processed"] === "yes" && ADDED.every((n) => h[`x-${n}-processed`] === "yes");
    }, {
      what: `the ${ADDED.length} new filters to run in Envoy after the restart`,
      timeoutMs: 40_000,
      details: async () => `statuses seen: ${JSON.stringify([...statuses])}\n${details()}`,
      signal: envoy.exitSignal,
    });

    // Envoy accepted everything it was last sent; no real rejection was recorded.
    const client = await waitFor(async () => {
      const c = (await cp!.clients()).find((x) => x.node.id === "envoy-local");
      const types = c ? Object.values(c.types) : [];
      return c && types.length > 0 && types.every((t) => t.ackedVersion !== null && t.ackedVersion === t.sentVersion) ? c : undefined;
    }, { what: "Envoy to ACK every type on the restarted control plane", timeoutMs: 20_000, details });
    for (const t of Object.values(client.types)) assert.equal(t.lastNack, null, `${t.short}: no NACK recorded`);
    assert.equal(await envoy.stat("listener_manager.total_listeners_active"), 1, "the listener is active");
  });
});
