// Following a reload live: GET /api/events on the real control plane while a real Envoy takes an
// edited filter, from the save to Envoy's ECDS ACK; then the same story in /metrics.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { ControlPlaneEvent } from "../../controlplane/events/bus.ts";
import { EXTENSION_CONFIG } from "../../controlplane/xds/type-urls.ts";
import type { BootstrapOpts } from "../support/bootstrap.ts";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { json, openSse, type SseStream } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

type Ev<T extends ControlPlaneEvent["type"]> = Extract<ControlPlaneEvent, { type: T }>;

/** Prometheus text -> "name{labels}" -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const MODES: { label: string; bootstrap: Pick<BootstrapOpts, "apiType"> }[] = [
  { label: "ADS, state of the world", bootstrap: { apiType: "GRPC" } },
  { label: "ADS, delta", bootstrap: { apiType: "DELTA_GRPC" } },
];

for (const mode of MODES) describe(`events and metrics of a reload through a real Envoy (${mode.label})`, { timeout: 180_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let stream: SseStream | undefined;
  const details = (): string => `--- envoy\n${envoy?.tail(20)}\n--- control plane\n${cp?.tail(30)}`;
  const filterHeader = async (): Promise<string | undefined> => {
    const r = await httpGet(`http://127.0.0.1:${ports.listener}/headers`);
    return r.status === 200 ? String(r.headers["x-wasm-filter"]) : undefined;
  };

  before(async () => {
    workDir = makeWorkDir(`events-${mode.bootstrap.apiType}`);
    filtersDir = copyFilters(path.join(workDir, "filters"));
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds, ...mode.bootstrap }, workDir });
    await envoy.waitReady(30_000);
    await waitFor(async () => (await filterHeader()) === "add-header", { what: "the seed filter to run", timeoutMs: 30_000, details, signal: envoy.exitSignal });
    await waitFor(async () => {
      const [c] = await cp.clients();
      return c !== undefined && Object.values(c.types).every((t) => t.ackedVersion !== null && t.ackedVersion === t.sentVersion);
    }, { what: "Envoy to ACK everything before the edit", timeoutMs: 30_000, details });
  });

  after(async () => {
    stream?.close();
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("an edit is followed on /api/events from build.started to the ECDS ACK, in order", async (t) => {
    stream = await openSse(`${cp.adminUrl}/api/events`);
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers["content-type"]), /^text\/event-stream/);
    const s = stream;
    const events = (): ControlPlaneEvent[] => s.messages.filter((m) => m.id !== undefined).map((m) => json<ControlPlaneEvent>(m));

    const file = path.join(filtersDir, "add-header", "index.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"x-wasm-filter", "add-header"', '"x-wasm-filter", "add-header-v2"'));

    /** The chain, each step the first matching event after the previous one. */
    const chain = () => {
      const all = events();
      const after = <T extends ControlPlaneEvent["type"]>(from: ControlPlaneEvent | undefined, type: T, ok: (e: Ev<T>) => boolean = () => true): Ev<T> | undefined =>
        from && (all.find((e) => e.seq > from.seq && e.type === type && ok(e as Ev<T>)) as Ev<T> | undefined);
      const started = all.find((e): e is Ev<"build.started"> => e.type === "build.started" && e.filter === "add-header");
      const built = after(started, "build.succeeded", (e) => e.filter === "add-header");
      const published = after(built, "snapshot.published", (e) => e.changed.includes(EXTENSION_CONFIG));
      const pushed = after(published, "xds.pushed", (e) => e.typeUrl === EXTENSION_CONFIG && e.resources.includes("add-header"));
      const acked = after(pushed, "xds.acked", (e) => e.typeUrl === EXTENSION_CONFIG && e.stream === pushed!.stream && e.version === pushed!.version);
      return started && built && published && pushed && acked ? { started, built, published, pushed, acked, all } : undefined;
    };
    const c = await s.until(chain, "build.started -> build.succeeded -> snapshot.published -> xds.pushed (ECDS) -> xds.acked (ECDS)", 60_000);
    const steps = [c.started, c.built, c.published, c.pushed, c.acked];
    const times = steps.map((e) => Date.parse(e.at));
    assert.ok(times.every((x, i) => i === 0 || x >= times[i - 1]!), `timestamps in order: ${steps.map((e) => `${e.type}@${e.at}`).join(", ")}`);
    assert.notEqual(c.built.sha256, undefined);
    // The new module reached Envoy through the module server in between (Envoy's cache miss).
    const served = c.all.find((e): e is Ev<"module.served"> => e.type === "module.served" && e.sha256 === c.built.sha256);
    assert.ok(served, "the module server reported the new module's download");
    assert.ok(served.seq > c.built.seq && served.seq < c.acked.seq, "downloaded between the build and the ACK");
    assert.equal(served.bytes, c.built.bytes, "the whole module");
    assert.equal(c.all.filter((e) => e.type === "xds.nacked").length, 0, "a cache miss is no NACK");
    t.diagnostic(`build ${times[1]! - times[0]!} ms, build->publish ${times[2]! - times[1]!} ms, publish->push ${times[3]! - times[2]!} ms, push->ACK ${times[4]! - times[3]!} ms (save to ACK ${times[4]! - times[0]!} ms)`);

    await waitFor(async () => (await filterHeader()) === "add-header-v2", { what: "the edited filter to run", timeoutMs: 20_000, details });

    const m = samples((await cp.api("/metrics")).body);
    assert.ok(m.get('wasmxds_builds_total{result="success"}')! >= 1);
    assert.ok(m.get('wasmxds_build_duration_seconds_count{result="success"}')! >= 1);
    assert.ok(m.get('wasmxds_xds_pushes_total{type="ECDS"}')! > 0);
    assert.ok(m.get('wasmxds_xds_acks_total{type="ECDS"}')! > 0);
    assert.ok(m.get('wasmxds_xds_pushes_total{type="LDS"}')! > 0);
    assert.ok(m.get('wasmxds_xds_push_to_ack_seconds_count{type="ECDS"}')! >= 1);
    assert.equal(m.get('wasmxds_xds_nacks_total{type="ECDS"}'), 0);
    assert.ok(m.get("wasmxds_xds_cache_miss_resends_total")! >= 1);
    assert.ok(m.get("wasmxds_module_bytes_served_total")! >= c.built.bytes);
    assert.equal(m.get("wasmxds_xds_envoys"), 1);
    assert.equal(m.get("wasmxds_xds_streams"), 1);
    assert.equal(m.get('wasmxds_filters{status="ok"}'), 1);
    // The Envoy connected after start-up, so this edit is the only change it propagated, and the
    // histogram holds exactly the build.started -> ACK time the events show.
    assert.equal(m.get("wasmxds_propagation_seconds_count"), 1);
    assert.equal(m.get("wasmxds_propagation_first_ack_seconds_count"), 1);
    const expected = (times[4]! - times[0]!) / 1000;
    assert.ok(Math.abs(m.get("wasmxds_propagation_seconds_sum")! - expected) < 0.0015, `propagation ${m.get("wasmxds_propagation_seconds_sum")} s = ACK - build.started = ${expected} s`);
    t.diagnostic(`wasmxds_propagation_seconds_sum ${m.get("wasmxds_propagation_seconds_sum")}`);
  });

  it("a reconnecting subscriber with Last-Event-ID gets exactly what it missed", async () => {
    const seen = stream!.messages.filter((m) => m.id !== undefined);
    const lastId = seen.at(-3)!.id!;
    stream!.close();
    const again = await openSse(`${cp.adminUrl}/api/events`, { "last-event-id": lastId });
    try {
      const replay = await again.until(() => {
        const got = again.messages.filter((m) => m.id !== undefined);
        return got.length >= 2 && got;
      }, "the replay");
      assert.deepEqual(replay.slice(0, 2).map((m) => m.id), seen.slice(-2).map((m) => m.id));
      assert.deepEqual(replay.slice(0, 2).map((m) => m.data), seen.slice(-2).map((m) => m.data));
    } finally {
      again.close();
    }
  });
});
