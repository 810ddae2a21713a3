// CP_BUILD_CPUS through the real control plane and a real Envoy: the control plane's compiles run
// in a process of their own on the requested CPU (Cpus_allowed_list in /proc), an edit still goes
// live and a broken one still fails while the last good module serves; a save that changes
// nothing compiles nothing and pushes nothing (the build cache). A start-up with a CPU list this
// machine cannot honour stops with a one-line error.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allowedCpus, cpusAllowedIn, formatCpuList } from "../../controlplane/compile/placement.ts";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../../controlplane/node-flags.ts";

const allowed = allowedCpus();
// The last CPU: on a machine with more than one, a set the control plane's own differs from.
const CPU = allowed ? String(allowed[allowed.length - 1]) : "0";
const skip = allowed === undefined ? "CPU affinity is Linux only" : false;
const FILTER = "stamp";

/** add-header's source, made to stamp `version` into the upstream request (x-stamp). */
function stampSource(version: string): string {
  const seed = fs.readFileSync(repoPath("filters", "add-header", "index.ts"), "utf8");
  const source = seed
    .replace(/"x-wasm-processed", "yes"/, `"x-stamp", "${version}"`)
    .replace(/registerRootContext\(([\s\S]*?)"add-header"\)/, `registerRootContext($1"${FILTER}")`);
  assert.ok(source.includes(`"x-stamp", "${version}"`) && source.includes(`"${FILTER}")`), "add-header's source has the expected shape");
  return source;
}

/** Compile processes (compile-child.ts) the control plane `pid` started. */
function compileChildren(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== pid) continue;
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("compile-child.ts")) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe("builds placed on CPUs (CP_BUILD_CPUS) through a real Envoy", { timeout: 180_000, skip }, () => {
  let workDir: string;
  let filtersDir: string;
  let ports: ControlPlanePorts;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  const entry = (): string => path.join(filtersDir, FILTER, "index.ts");
  const details = (): string => `--- envoy\n${envoy?.tail(20)}\n--- control plane\n${cp?.tail(30)}`;
  const stamp = async (): Promise<string | undefined> => {
    const r = await httpGet(`http://127.0.0.1:${ports.listener}/headers`);
    return r.status === 200 ? (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-stamp"] : undefined;
  };
  /** Control plane log lines about this filter matching `pattern`. */
  const logCount = (pattern: RegExp): number =>
    fs.readFileSync(cp.logPath, "utf8").split("\n").filter((l) => l.includes(`"filter":"${FILTER}"`) && pattern.test(l)).length;
  /** The ECDS version last sent to the Envoy. */
  const ecdsSent = async (): Promise<string | null | undefined> => {
    const types = (await cp.clients())[0]?.types ?? {};
    return Object.values(types).find((t) => t.short === "ECDS")?.sentVersion;
  };

  before(async () => {
    workDir = makeWorkDir("build-placement");
    filtersDir = copyFilters(path.join(workDir, "filters"));
    fs.mkdirSync(path.join(filtersDir, FILTER));
    fs.writeFileSync(entry(), stampSource("v0"));
    ports = await allocatePorts();
    echo = await startEchoUpstream();
    cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir, env: { CP_BUILD_CPUS: CPU } });
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, workDir, concurrency: 1 });
    await waitFor(async () => (await stamp()) === "v0", { what: "stamp v0 live", timeoutMs: 90_000, details });
  });

  after(async () => {
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("compiles in a process pinned to the requested CPU, and an edit goes live", async () => {
    // One per compile thread that has run a compile (CP_BUILD_WORKERS: the two filters may have
    // been built side by side at start-up).
    const children = compileChildren(cp.pid);
    assert.ok(children.length >= 1, `a compile process under the control plane\n${details()}`);
    for (const child of children) assert.equal(formatCpuList(cpusAllowedIn(fs.readFileSync(`/proc/${child}/status`, "utf8")) ?? []), CPU);
    const cpStatus = fs.readFileSync(`/proc/${cp.pid}/status`, "utf8");
    assert.deepEqual(cpusAllowedIn(cpStatus), allowed, "the control plane itself is not pinned");
    fs.writeFileSync(entry(), stampSource("v1"));
    await waitFor(async () => (await stamp()) === "v1", { what: "stamp v1 live", timeoutMs: 60_000, details });
    for (const child of compileChildren(cp.pid)) assert.ok(children.includes(child), "compile processes are kept between builds");
  });

  it("a save that changes nothing compiles nothing and pushes nothing", async () => {
    const before = { sent: await ecdsSent(), unchanged: logCount(/same inputs as its last build/), built: logCount(/"filter built"/) };
    assert.ok(before.sent, `an ECDS version was sent: ${details()}`);
    fs.writeFileSync(entry(), stampSource("v1"));
    await waitFor(() => logCount(/same inputs as its last build/) > before.unchanged, { what: "the identical save to be handled", timeoutMs: 30_000, details });
    assert.equal(logCount(/"filter built"/), before.built, "no compile");
    assert.equal(await ecdsSent(), before.sent, "no push");
    assert.equal(await stamp(), "v1");
  });

  it("a broken edit fails with its diagnostic while the last good module serves", async () => {
    fs.writeFileSync(entry(), stampSource("v2").replace("class ", "clas "));
    const failed = await waitFor(async () => {
      const f = await cp.filter(FILTER);
      return f?.status === "error" ? f : undefined;
    }, { what: "the broken build to fail", timeoutMs: 60_000, details });
    assert.match(JSON.stringify(failed), /ERROR/);
    assert.equal(await stamp(), "v1");
  });
});

describe("CP_BUILD_CPUS this machine cannot honour", { timeout: 60_000, skip }, () => {
  it("stops the control plane at start-up with a one-line reason", () => {
    const r = spawnSync(process.execPath, [...CONTROLPLANE_NODE_FLAGS, repoPath("scripts", "run-controlplane.mjs")], {
      env: { ...process.env, CP_BUILD_CPUS: "4095" }, encoding: "utf8", timeout: 50_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^wasm-xds: CP_BUILD_CPUS="4095": CPU 4095 is not available to this process \(it may use [\d,-]+\)$/m);
  });
});
