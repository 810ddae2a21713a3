// Rust filters from source through a real Envoy: filters/hello-rust (Cargo.toml, the proxy-wasm
// crate) is built by cargo on start, served next to the AssemblyScript add-header, hot-reloaded
// on an edit of src/lib.rs under load with zero failed requests (every xDS mode, as
// hot-reload.test.ts), and, in the first mode only (the build path does not depend on the xDS
// mode): a compile error shows in the API with file:line while the last good module serves, and a
// restart with unchanged inputs takes the module from the build cache without running cargo.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import type { BootstrapOpts } from "../support/bootstrap.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

// Without cargo this suite cannot run: skipped on a machine without Rust (npm run setup says how
// to get it), never under CI, where its absence fails the suite (setup too).
const noCargo = spawnSync(process.env.CARGO || "cargo", ["-V"]).error !== undefined;
const skip = noCargo && process.env.CI !== "true" ? "cargo is not installed (npm run setup says how to get it)" : false;

const MODES: { label: string; bootstrap: Pick<BootstrapOpts, "apiType" | "perTypeServices"> }[] = [
  { label: "ADS, state of the world", bootstrap: { apiType: "GRPC" } },
  { label: "ADS, delta", bootstrap: { apiType: "DELTA_GRPC" } },
  { label: "per-type services, state of the world", bootstrap: { apiType: "GRPC", perTypeServices: true } },
  { label: "per-type services, delta", bootstrap: { apiType: "DELTA_GRPC", perTypeServices: true } },
];

const PROCESSED = /const PROCESSED: &str = "[^"]*";/;

/** hello-rust's source with its header value (the `PROCESSED` constant) replaced. */
function withValue(source: string, value: string): string {
  assert.match(source, PROCESSED, "hello-rust's src/lib.rs declares PROCESSED");
  return source.replace(PROCESSED, `const PROCESSED: &str = "${value}";`);
}

interface Echoed {
  headers: Record<string, string>;
}

for (const [index, mode] of MODES.entries()) describe(`a Rust filter from source through a real Envoy (${mode.label})`, { timeout: 300_000, skip }, () => {
  const full = index === 0;
  let workDir: string;
  let filtersDir: string;
  let libRs: string;
  let original: string;
  let stateFile: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let listenerUrl: string;

  const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(30)}\n--- control plane\n${cp?.tail(30)}`;
  const get = (agent?: http.Agent): Promise<HttpResponse> => httpGet(`${listenerUrl}/headers`, undefined, agent);
  const echoed = (r: HttpResponse): Echoed => JSON.parse(r.body) as Echoed;
  const until = (what: string, ok: (r: HttpResponse) => boolean, timeoutMs = 30_000): Promise<HttpResponse> =>
    waitFor(async () => {
      const r = await get();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs, details, signal: envoy.exitSignal });

  before(async () => {
    workDir = makeWorkDir(`rust-filter-${mode.bootstrap.perTypeServices ? "pertype" : "ads"}-${mode.bootstrap.apiType}`);
    filtersDir = copyFilters(path.join(workDir, "filters"), { rust: true });
    libRs = path.join(filtersDir, "hello-rust", "src", "lib.rs");
    original = fs.readFileSync(libRs, "utf8");
    stateFile = path.join(workDir, "state.json");
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    listenerUrl = `http://127.0.0.1:${ports.listener}`;
    // Start-up waits for every filter's first build: cargo's cold one (proxy-wasm and its
    // dependencies; a download too when cargo's registry cache is empty) included.
    cp = await startControlPlane({ ports, filtersDir, stateFile, upstreamPort: echo.port, workDir });
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds, ...mode.bootstrap }, workDir, concurrency: 2, componentLogLevel: "wasm:info,config:info" });
    await envoy.waitReady(30_000);
  });

  after(async () => {
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("hello-rust is built by cargo and adds its headers next to the AssemblyScript add-header", async () => {
    const r = await until("hello-rust to run", (x) => x.status === 200 && x.headers["x-hello-rust"] === "Yes", 120_000);
    // Both filters add the request header; the echo upstream joins repeats with ", " (chain order).
    assert.deepEqual(echoed(r).headers["x-wasm-processed"]?.split(", "), ["yes", "Yes"], "add-header (order 10), then hello-rust (order 20)");
    assert.equal(r.headers["x-wasm-filter"], "add-header");
    const filters = await cp.filters();
    assert.deepEqual(filters.map((f) => `${f.name}:${f.status}`), ["add-header:ok", "hello-rust:ok"]);
    const rust = filters.find((f) => f.name === "hello-rust")!;
    assert.match(rust.sha256 ?? "", /^[0-9a-f]{64}$/);
    const dump = JSON.stringify(await envoy.configDump("ecds_filters"));
    assert.ok(dump.includes(rust.sha256!), `ecds_filters config dump names ${rust.sha256}`);
    // The build output is in the state directory, never in the watched filters folder.
    assert.equal(fs.existsSync(path.join(filtersDir, "hello-rust", "target")), false, "no target/ in the filter folder");
    assert.ok(fs.readdirSync(path.join(workDir, "cargo-target")).some((d) => d.startsWith("hello-rust-")), "cargo's output under <state dir>/cargo-target");
    // The SDK imports every host call it wraps, and Rust's std some WASI ones: classified into
    // groups (a warning for the author), none of them called by this filter.
    const caps = rust.capabilities!;
    assert.deepEqual(caps.declared, [], "hello-rust needs nothing beyond the base set");
    for (const [imp, group] of [["environ_get", "wasi_env"], ["environ_sizes_get", "wasi_env"], ["fd_write", "wasi_fs"]]) {
      assert.ok(caps.undeclaredImports.some((u) => u.import === `wasi_snapshot_preview1.${imp}` && u.group === group), `${imp} is classified as ${group}`);
    }
    assert.ok(!caps.undeclaredImports.some((u) => u.import === "wasi_snapshot_preview1.proc_exit"), "proc_exit is in the base set");
    assert.doesNotMatch(fs.readFileSync(envoy.logPath, "utf8"), /restricted (proxy-wasm|WASI) capability/, "Envoy denied no call");
  });

  it("an edit of src/lib.rs goes live under concurrent load with zero non-200 responses", async () => {
    const agents = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const statuses = new Map<number, number>();
    const errors: string[] = [];
    const before = (await cp.filter("hello-rust"))?.sha256;
    let sawV2 = 0;
    let stop = false;
    let total = 0;
    const MAX_REQUESTS = 50_000;
    const worker = async (agent: http.Agent): Promise<void> => {
      while (!stop && total < MAX_REQUESTS) {
        total++;
        try {
          const r = await get(agent);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status === 200 && r.headers["x-hello-rust"] === "v2") sawV2++;
        } catch (err) {
          errors.push(String(err));
        }
      }
    };
    const load = Promise.all(agents.map(worker));
    try {
      await waitFor(() => total > 200, { what: "load to start", timeoutMs: 10_000 });
      fs.writeFileSync(libRs, withValue(original, "v2"));
      await waitFor(() => sawV2 > 300, { what: "v2 to serve 300 requests under load", timeoutMs: 90_000, details });
    } finally {
      stop = true;
      await load;
      for (const a of agents) a.destroy();
    }
    assert.deepEqual(errors, [], "no request failed at the connection level");
    assert.deepEqual([...statuses.keys()], [200], `status counts: ${JSON.stringify([...statuses])}`);
    assert.ok(total > 500, `load actually ran (${total} requests)`);
    const after = await cp.filter("hello-rust");
    assert.equal(after?.status, "ok");
    assert.notEqual(after?.sha256, before, "a new module");
    const r = await get();
    assert.deepEqual(echoed(r).headers["x-wasm-processed"]?.split(", "), ["yes", "v2"], "the request header changed too");
  });

  if (!full) return;

  it("a compile error shows in the API with file:line and the last good module keeps serving", async () => {
    const good = await cp.filter("hello-rust");
    const broken = withValue(original, "v2").replace(/Action::Continue(\n\s*}\n\n\s*fn on_http_response)/, "Action::Continu$1");
    assert.notEqual(broken, withValue(original, "v2"), "the typo went in");
    fs.writeFileSync(libRs, broken);
    const failed = await waitFor(async () => {
      const f = await cp.filter("hello-rust");
      return f?.status === "error" ? f : undefined;
    }, { what: "the broken build to be reported", timeoutMs: 60_000, details });
    assert.match(failed.error ?? "", /^hello-rust: filters\/hello-rust\/src\/lib\.rs:\d+:\d+: error\[E0599\]: no variant or associated item named `Continu`/);
    assert.equal(failed.sha256, good?.sha256, "the last good module is still the one announced");
    for (let i = 0; i < 20; i++) {
      const r = await get();
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-hello-rust"], "v2", "Envoy still runs the last good module");
    }
    assert.equal((await cp.filter("add-header"))?.status, "ok", "other filters are untouched");
    fs.writeFileSync(libRs, withValue(original, "v2"));
    await waitFor(async () => (await cp.filter("hello-rust"))?.status === "ok", { what: "the fixed build", timeoutMs: 60_000, details });
    assert.equal((await cp.filter("hello-rust"))?.sha256, good?.sha256, "same source, same module");
  });

  it("a restart with unchanged inputs takes the module from the build cache: cargo never runs", async () => {
    const before = await cp.filter("hello-rust");
    await cp.kill("SIGTERM");
    // cargo would recreate its target folder on any build.
    const targets = path.join(workDir, "cargo-target");
    fs.rmSync(targets, { recursive: true });
    cp = await startControlPlane({ ports, filtersDir, stateFile, upstreamPort: echo.port, workDir, name: "controlplane-restarted" });
    const f = await cp.filter("hello-rust");
    assert.equal(f?.status, "ok", f?.error);
    assert.equal(f?.sha256, before?.sha256, "the same module");
    assert.match(fs.readFileSync(cp.logPath, "utf8"), /"filter":"hello-rust"[^\n]*"cache":"(unchanged|hit)"/, "logged as a cache hit");
    assert.equal(fs.existsSync(targets), false, "cargo did not run");
    await until("Envoy to keep serving hello-rust", (x) => x.status === 200 && x.headers["x-hello-rust"] === "v2");
  });

  it("without cargo, start-up is not blocked and only the Rust filter reports a build error", async () => {
    await cp.kill("SIGTERM");
    cp = await startControlPlane({
      ports, filtersDir, stateFile, upstreamPort: echo.port, workDir, name: "controlplane-no-cargo", env: { CARGO: path.join(workDir, "no-such-cargo") },
    });
    const f = await cp.filter("hello-rust");
    assert.equal(f?.status, "error");
    assert.match(f?.error ?? "", /^hello-rust: cargo not found .*rustup target add wasm32-wasip1/);
    assert.equal((await cp.filter("add-header"))?.status, "ok", "the AssemblyScript filter builds");
    await waitFor(async () => {
      const [c] = await cp.clients();
      return c && Object.values(c.types).every((t) => t.ackedVersion !== null);
    }, { what: "Envoy to reconnect", timeoutMs: 60_000, details });
    const r = await get();
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-hello-rust"], "v2", "the last good module (restored from the state directory) keeps serving");
  });
});
