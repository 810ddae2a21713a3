// Issue 11 parts 1 and 2 against the real control-plane process and a real Envoy: uploads, pins
// and retained modules survive a restart; a restart, a touch or an identical save compiles
// nothing (the build cache); a failed write to the state directory (read-only, full: small tmpfs
// mounts, the tests run as root) answers 503 with the reason and changes nothing.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess,
} from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

interface Echoed { headers: Record<string, string> }
interface Detail { sha256: string | null; pinnedSha256: string | null; history: { sha256: string; source: string; builtAt: string }[]; envoys: { node: string; sha256: string | null }[] }

/** A running control plane and Envoy on one filters folder and state directory; the control plane restarts. */
function harness(name: string, opts: { env?: () => Record<string, string> } = {}) {
  const h = {
    workDir: "", filtersDir: "", stateFile: "", ports: undefined as unknown as ControlPlanePorts,
    echo: undefined as EchoUpstream | undefined, cp: undefined as ControlPlaneProcess | undefined, envoy: undefined as EnvoyProcess | undefined,
    runs: 0,
    last: undefined as HttpResponse | undefined,
    details: (): string => `--- last response: ${h.last?.status} ${JSON.stringify(h.last?.headers)} ${h.last?.body.slice(0, 400)}\n` +
      `--- envoy\n${h.envoy?.tail(20)}\n--- control plane\n${h.cp?.tail(30)}`,
    get: async (): Promise<HttpResponse> => (h.last = await httpGet(`http://127.0.0.1:${h.ports.listener}/headers`)),
    until: (what: string, ok: (r: HttpResponse) => boolean) => waitFor(async () => {
      const r = await h.get();
      return ok(r) ? r : undefined;
    }, { what, timeoutMs: 60_000, details: h.details }),
    async startCp(): Promise<ControlPlaneProcess> {
      h.cp = await startControlPlane({
        ports: h.ports, filtersDir: h.filtersDir, stateFile: h.stateFile, upstreamPort: h.echo!.port, workDir: h.workDir,
        name: `controlplane-${++h.runs}`, ...(opts.env ? { env: opts.env() } : {}),
      });
      await waitFor(() => log(h.cp!).includes('"msg":"control plane ready"'), { what: "control plane ready", timeoutMs: 90_000, details: h.details });
      return h.cp;
    },
    async restart(): Promise<ControlPlaneProcess> {
      await h.cp!.kill("SIGTERM");
      return h.startCp();
    },
    async setup(): Promise<void> {
      h.workDir = makeWorkDir(name);
      h.filtersDir = copyFilters(path.join(h.workDir, "filters"));
      h.stateFile = path.join(h.workDir, "state", "state.json");
      h.ports = await allocatePorts();
      h.echo = await startEchoUpstream();
    },
    async startEnvoy(): Promise<void> {
      h.envoy = await startEnvoy({ bootstrap: { xdsPort: h.ports.xds }, workDir: h.workDir });
      await h.envoy.waitReady(30_000);
    },
    async stop(): Promise<void> {
      await h.envoy?.stop();
      await h.cp?.kill("SIGTERM");
      await h.echo?.close();
    },
  };
  return h;
}

const log = (cp: ControlPlaneProcess): string => fs.readFileSync(cp.logPath, "utf8");
/** Log lines with this pino message. */
const lines = (cp: ControlPlaneProcess, msg: string): string[] => log(cp).split("\n").filter((l) => l.includes(`"msg":"${msg}"`));
const detail = async (cp: ControlPlaneProcess, name: string): Promise<Detail> => JSON.parse((await cp.api(`/api/filters/${name}`)).body) as Detail;

describe("durable modules and the build cache (real control plane, real Envoy)", { timeout: 300_000 }, () => {
  const h = harness("durable");
  const addHeader = () => path.join(h.filtersDir, "add-header", "index.ts");

  before(async () => {
    await h.setup();
    await h.startCp();
    await h.startEnvoy();
    await h.until("add-header running", (r) => r.status === 200 && r.headers["x-wasm-filter"] === "add-header");
  });
  after(() => h.stop());

  it("a restart with nothing changed compiles nothing: same module, same builtAt, no build in the log", async () => {
    const before = await h.cp!.filter("add-header");
    assert.equal(lines(h.cp!, "filter built").length, 1, "the first start compiled add-header");
    const cp = await h.restart();
    const after = await cp.filter("add-header");
    assert.deepEqual(lines(cp, "filter built"), [], "no compile after the restart");
    assert.equal(lines(cp, "filter unchanged: same inputs as its last build").length, 1);
    assert.equal(after?.sha256, before?.sha256);
    assert.equal(after?.builtAt, before?.builtAt, "the stored module, not a new build");
    assert.equal(after?.buildMs, before?.buildMs);
  });

  it("a touch and an editor's atomic save of identical bytes compile nothing; a real edit compiles", async () => {
    const cp = h.cp!;
    const unchanged = () => lines(cp, "filter unchanged: same inputs as its last build").length;
    const before = unchanged();
    const file = addHeader();
    fs.utimesSync(file, new Date(), new Date(Date.now() + 10_000));
    await waitFor(() => unchanged() === before + 1, { what: "the touch to be seen and found unchanged", timeoutMs: 30_000, details: h.details });
    fs.writeFileSync(`${file}.tmp`, fs.readFileSync(file));
    fs.renameSync(`${file}.tmp`, file);
    await waitFor(() => unchanged() === before + 2, { what: "the identical save to be found unchanged", timeoutMs: 30_000, details: h.details });
    assert.deepEqual(lines(cp, "filter built"), [], "nothing compiled");

    const old = (await cp.filter("add-header"))?.sha256;
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"x-wasm-processed", "yes"', '"x-wasm-processed", "edited"'));
    await waitFor(async () => lines(cp, "filter built").length === 1 && (await cp.filter("add-header"))?.sha256 !== old,
      { what: "the edit to compile", timeoutMs: 60_000, details: h.details });
    await h.until("the edit running", (r) => r.status === 200 && (JSON.parse(r.body) as Echoed).headers["x-wasm-processed"] === "edited");
  });

  it("an uploaded module survives a restart: still in the API and run by Envoy", async () => {
    const seed = (await h.cp!.filter("add-header"))!.sha256!;
    const wasm = Buffer.from(await (await fetch(`http://127.0.0.1:${h.ports.modules}/modules/${seed}.wasm`)).arrayBuffer());
    const res = await httpRequest(`${h.cp!.adminUrl}/api/filters/uploaded/module?rootId=add-header`, {
      method: "PUT", body: wasm, headers: { "content-type": "application/wasm" }, timeoutMs: 60_000,
    });
    assert.equal(res.status, 200, res.body);
    const both = (r: HttpResponse) => r.status === 200 && r.headers["x-wasm-filter"] === "add-header, add-header";
    await h.until("the upload running beside add-header", both);

    const cp = await h.restart();
    const uploaded = await cp.filter("uploaded");
    assert.equal(uploaded?.status, "ok");
    assert.equal(uploaded?.sha256, seed);
    assert.equal((await detail(cp, "uploaded")).history.at(-1)?.source, "upload");
    // The restarted control plane serves it: Envoy (reconnected) ACKs a config naming it.
    await waitFor(async () => (await detail(cp, "uploaded")).envoys.some((e) => e.sha256 === seed),
      { what: "Envoy to ACK the uploaded filter from the restarted control plane", timeoutMs: 60_000, details: h.details });
    const served = await fetch(`http://127.0.0.1:${h.ports.modules}/modules/${seed}.wasm`);
    assert.equal(served.status, 200, "the module server serves it from the store");
    assert.ok(both(await h.get()));
  });

  it("a rollback pin survives a restart, and its module is still served", async () => {
    const cp = h.cp!;
    const history = (await detail(cp, "add-header")).history;
    assert.ok(history.length >= 2, `add-header has an older module: ${JSON.stringify(history)}`);
    const older = history[history.length - 1]!.sha256; // newest first in the API
    const res = await httpRequest(`${cp.adminUrl}/api/filters/add-header/rollback`, {
      method: "POST", body: JSON.stringify({ sha256: older }), headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 200, res.body);
    // The upload is a copy of the edited module ("edited"); the pinned original says "yes".
    const original = (r: HttpResponse) => r.status === 200 && /\byes\b/.test((JSON.parse(r.body) as Echoed).headers["x-wasm-processed"] ?? "");
    await h.until("the pinned (original) module running", original);

    const restarted = await h.restart();
    const f = await restarted.filter("add-header");
    assert.equal(f?.pinnedSha256, older);
    assert.equal(f?.sha256, older);
    assert.deepEqual(lines(restarted, "filter built"), [], "nothing compiled, the pin was not taken for an edit");
    await waitFor(async () => (await detail(restarted, "add-header")).envoys.some((e) => e.sha256 === older),
      { what: "Envoy to ACK the pinned module from the restarted control plane", timeoutMs: 60_000, details: h.details });
    assert.ok(original(await h.get()));
  });
});

/** Mounts a tmpfs of `size` at `dir`; false where that is not allowed (not root). */
function mount(dir: string, size: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const remount = (dir: string, mode: "ro" | "rw") => execFileSync("mount", ["-o", `remount,${mode}`, dir]);

describe("failed writes to the state directory change nothing (tmpfs mounts)", { timeout: 240_000 }, () => {
  let stateFs = "";
  let storeFs = "";
  let mounted = false;
  const h = harness("durable-fail", { env: () => ({ CP_STATE_DIR: storeFs }) });
  const post = (p: string, body?: unknown) => httpRequest(`${h.cp!.adminUrl}${p}`, body === undefined ? { method: "POST" }
    : { method: "PUT", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const runs = (r: HttpResponse) => r.status === 200 && r.headers["x-wasm-filter"] === "add-header";

  before(async () => {
    await h.setup();
    // The operator state file on a 64 KiB tmpfs, modules and records on a 1 MiB one.
    stateFs = path.dirname(h.stateFile);
    storeFs = path.join(h.workDir, "store");
    mounted = mount(stateFs, "64k") && mount(storeFs, "1m");
    if (!mounted) return;
    await h.startCp();
    await h.startEnvoy();
    await h.until("add-header running", runs);
  });
  after(async () => {
    await h.stop();
    for (const dir of [stateFs, storeFs]) {
      try {
        execFileSync("umount", [dir], { stdio: "ignore" });
      } catch {
        // not mounted
      }
    }
  });

  it("read-only: a disable answers 503 with the reason; nothing changes, and no later write carries it", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here (needs root)");
    assert.equal((await post("/api/filters/add-header/order", { order: 3 })).status, 200);
    const saved = fs.readFileSync(h.stateFile, "utf8");
    remount(stateFs, "ro");
    try {
      const res = await post("/api/filters/add-header/disable");
      assert.equal(res.status, 503, res.body);
      assert.match(res.body, /add-header: not changed: cannot save operator state: cannot write .*state\.json: EROFS/);
      assert.equal((await h.cp!.filter("add-header"))?.enabled, true, "memory unchanged");
      assert.equal((await post("/api/filters/add-header/order", { order: 4 })).status, 503);
      assert.equal(fs.readFileSync(h.stateFile, "utf8"), saved, "file unchanged");
    } finally {
      remount(stateFs, "rw");
    }
    assert.equal((await post("/api/filters/add-header/order", { order: 5 })).status, 200);
    const after = await h.cp!.filter("add-header");
    assert.equal(after?.enabled, true, "the failed disable was not carried by a later write");
    assert.equal(after?.order, 5);
    assert.deepEqual(JSON.parse(fs.readFileSync(h.stateFile, "utf8")), { filters: { "add-header": { order: 5 } } });
    assert.ok(runs(await h.get()), "Envoy still runs the filter");
  });

  it("full: a disable answers 503 (ENOSPC) and changes nothing", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here (needs root)");
    assert.equal((await post("/api/filters/add-header/order", { order: 5 })).status, 200);
    const filler = path.join(stateFs, "filler");
    try {
      execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=4k"], { stdio: "ignore" });
    } catch {
      // dd stops with ENOSPC: the file system is full, which is the point
    }
    try {
      const res = await post("/api/filters/add-header/disable");
      assert.equal(res.status, 503, res.body);
      assert.match(res.body, /ENOSPC/);
      assert.equal((await h.cp!.filter("add-header"))?.enabled, true);
      assert.deepEqual(JSON.parse(fs.readFileSync(h.stateFile, "utf8")), { filters: { "add-header": { order: 5 } } });
      assert.deepEqual(fs.readdirSync(stateFs).sort(), ["filler", "state.json"], "no temp file left behind");
    } finally {
      fs.rmSync(filler, { force: true });
    }
  });

  it("a module store that cannot be written: an upload answers 503 and registers nothing", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here (needs root)");
    const seed = (await h.cp!.filter("add-header"))!.sha256!;
    const wasm = Buffer.from(await (await fetch(`http://127.0.0.1:${h.ports.modules}/modules/${seed}.wasm`)).arrayBuffer());
    const before = fs.readdirSync(path.join(storeFs, "records"));
    remount(storeFs, "ro");
    try {
      const res = await httpRequest(`${h.cp!.adminUrl}/api/filters/uploaded/module?rootId=add-header`, {
        method: "PUT", body: wasm, headers: { "content-type": "application/wasm" }, timeoutMs: 60_000,
      });
      assert.equal(res.status, 503, res.body);
      assert.match(res.body, /uploaded: module not stored, nothing changed: .*EROFS/);
      assert.equal(await h.cp!.filter("uploaded"), undefined);
      assert.deepEqual(fs.readdirSync(path.join(storeFs, "records")), before);
    } finally {
      remount(storeFs, "rw");
    }
  });

  it("the control plane refuses to start on a read-only state directory, saying why", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here (needs root)");
    remount(stateFs, "ro");
    try {
      const other = await allocatePorts();
      await assert.rejects(startControlPlane({
        ports: other, filtersDir: h.filtersDir, stateFile: h.stateFile, upstreamPort: h.echo!.port, workDir: h.workDir,
        name: "controlplane-readonly", env: { CP_STATE_DIR: storeFs },
      }), /exited during start-up[\s\S]*state directory .* is not writable: .*EROFS/);
    } finally {
      remount(stateFs, "rw");
    }
  });
});
