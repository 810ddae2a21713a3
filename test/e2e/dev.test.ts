// `npm run dev` as a user runs it: the real command (npm, tsx, the control plane, the real Envoy,
// the echo upstream), on ports this test picks, against a copy of the filters. It covers the
// README's long-running commands (`npm run dev`, and through it `npm run cp`'s entry point).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, describe, it } from "node:test";
import { copyFilters } from "../support/controlplane.ts";
import { httpGet } from "../support/http.ts";
import { makeWorkDir, repoRoot } from "../support/paths.ts";
import { freePorts } from "../support/ports.ts";
import { waitFor } from "../support/wait.ts";

interface DevRun {
  child: ChildProcess;
  /** stdout and stderr so far (NO_COLOR: plain text). */
  output(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
}

const runs: DevRun[] = [];
after(() => {
  // A failed assertion must not leave a stack behind: kill the whole process group.
  for (const run of runs) if (run.running && run.child.pid !== undefined) {
    try {
      process.kill(-run.child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Spawns `npm run dev -- <args>` in its own process group, like a terminal's foreground job. */
function startDev(args: string[], env: Record<string, string>, logFile: string): DevRun {
  const child = spawn("npm", ["run", "dev", "--", ...args], {
    cwd: repoRoot,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  let stderr = "";
  const log = fs.createWriteStream(logFile);
  child.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
    log.write(chunk);
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
    stderr += chunk.toString("utf8");
    log.write(chunk);
  });
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false;
      log.end();
      resolve({ code, signal });
    });
  });
  const run: DevRun = { child, output: () => output, stderr: () => stderr, exited, get running() { return running; } };
  runs.push(run);
  return run;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

function outputTail(run: DevRun): string {
  return `--- npm run dev output (last 40 lines)\n${run.output().split("\n").slice(-40).join("\n")}`;
}

describe("npm run dev", () => {
  it("serves the filters through a local Envoy, shows an edit on the next curl, and Ctrl-C stops all three", async () => {
    const workDir = makeWorkDir("dev");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    const [listener, xds, modules, admin, envoyAdmin] = (await freePorts(5)) as [number, number, number, number, number];
    const run = startDev(
      ["--listener-port", String(listener), "--xds-port", String(xds), "--module-port", String(modules),
        "--admin-port", String(admin), "--envoy-admin-port", String(envoyAdmin)],
      // CP_FILTERS_DIR: the copy, never the repository's filters/; the state file stays in workDir too.
      { CP_FILTERS_DIR: filtersDir, CP_STATE_FILE: path.join(workDir, "state.json") },
      path.join(workDir, "dev.log"),
    );
    const details = (): string => outputTail(run);

    // The curl it prints is the one a user copies.
    const curlUrl = await waitFor(() => {
      if (!run.running) throw new Error("npm run dev exited");
      return /curl -si (http:\/\/\S+)/.exec(run.output())?.[1];
    }, { timeoutMs: 90_000, what: "npm run dev to print the curl to try", details });
    assert.equal(curlUrl, `http://127.0.0.1:${listener}/headers`);
    assert.match(run.output(), new RegExp(`dashboard: +http://127\\.0\\.0\\.1:${admin}/`));
    const cpPid = Number(/control plane \(pid (\d+)\)/.exec(run.output())?.[1]);
    const envoyPid = Number(/envoy \(pid (\d+)\)/.exec(run.output())?.[1]);
    assert.ok(cpPid > 0 && envoyPid > 0, `pids printed:\n${details()}`);
    const echoPort = Number(/echo upstream :(\d+)/.exec(run.output())?.[1]);
    assert.ok(echoPort > 0, `echo port printed:\n${details()}`);

    // The filter runs: a response header it adds, and a request header the upstream received.
    const first = await waitFor(async () => {
      const res = await httpGet(curlUrl);
      return res.status === 200 && res.headers["x-wasm-filter"] === "add-header" ? res : undefined;
    }, { timeoutMs: 30_000, what: `GET ${curlUrl} with x-wasm-filter: add-header`, details });
    const echoed = JSON.parse(first.body) as { headers: Record<string, string> };
    assert.equal(echoed.headers["x-wasm-processed"], "yes");
    // The dashboard is where the banner says.
    const dashboard = await httpGet(`http://127.0.0.1:${admin}/`);
    assert.equal(dashboard.status, 200);
    assert.match(String(dashboard.headers["content-type"]), /text\/html/);

    // Edit the copy's add-header; the next curls show the new module.
    const source = path.join(filtersDir, "add-header", "index.ts");
    const before = fs.readFileSync(source, "utf8");
    const edited = before.replace('add("x-wasm-filter", "add-header")', 'add("x-wasm-filter", "add-header-edited")');
    assert.notEqual(edited, before, "the edit must change add-header's source");
    fs.writeFileSync(source, edited);
    await waitFor(async () => (await httpGet(curlUrl)).headers["x-wasm-filter"] === "add-header-edited",
      { timeoutMs: 60_000, what: "the edited filter's header on the next curl", details });
    assert.match(run.output(), /echo +\| GET \/headers x-wasm-processed=yes/, "the echo upstream logs requests");
    assert.match(run.output(), /cp +\| \d\d:\d\d:\d\d\.\d{3} INFO +filter built filter=add-header/, "pino lines are readable");

    // Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    assert.ok(alive(cpPid) && alive(envoyPid), "control plane and Envoy run before Ctrl-C");
    process.kill(-run.child.pid!, "SIGINT");
    await waitFor(() => !run.running, { timeoutMs: 30_000, what: "npm run dev to exit after SIGINT", details });
    const exit = await run.exited;
    assert.match(run.output(), /stopped envoy, control plane and echo upstream/, details());
    assert.ok(exit.code === 0 || exit.signal === "SIGINT", `npm run dev exit: ${JSON.stringify(exit)}\n${details()}`);
    assert.equal(alive(envoyPid), false, "no orphan Envoy");
    assert.equal(alive(cpPid), false, "no orphan control plane");
    for (const port of [listener, xds, modules, admin, envoyAdmin, echoPort]) {
      assert.ok(await refusesConnections(port), `port ${port} still accepts connections after Ctrl-C`);
    }
    // Nothing else of the job is left either (tsx's esbuild services included).
    await waitFor(() => {
      try {
        process.kill(-run.child.pid!, 0);
        return false;
      } catch {
        return true;
      }
    }, { timeoutMs: 10_000, what: "every process of npm run dev's process group to exit" });
  });

  it("stops the control plane and Envoy itself when only its own process is told to (SIGTERM)", async () => {
    const workDir = makeWorkDir("dev-sigterm");
    const [listener, xds, modules, admin, envoyAdmin] = (await freePorts(5)) as [number, number, number, number, number];
    const run = startDev(
      ["--listener-port", String(listener), "--xds-port", String(xds), "--module-port", String(modules),
        "--admin-port", String(admin), "--envoy-admin-port", String(envoyAdmin)],
      { CP_FILTERS_DIR: copyFilters(path.join(workDir, "filters")), CP_STATE_FILE: path.join(workDir, "state.json") },
      path.join(workDir, "dev.log"),
    );
    const details = (): string => outputTail(run);
    await waitFor(() => {
      if (!run.running) throw new Error("npm run dev exited");
      return run.output().includes("curl -si ");
    }, { timeoutMs: 90_000, what: "npm run dev to be ready", details });
    const devPid = Number(/npm run dev \(pid (\d+)\)/.exec(run.output())?.[1]);
    const cpPid = Number(/control plane \(pid (\d+)\)/.exec(run.output())?.[1]);
    const envoyPid = Number(/envoy \(pid (\d+)\)/.exec(run.output())?.[1]);
    assert.ok(devPid > 0 && cpPid > 0 && envoyPid > 0, `pids printed:\n${details()}`);

    // Unlike Ctrl-C, nothing else gets a signal: the dev command alone must stop the other two.
    process.kill(devPid, "SIGTERM");
    await waitFor(() => !alive(devPid), { timeoutMs: 30_000, what: "the dev process to exit after SIGTERM", details });
    assert.match(run.output(), /stopped envoy, control plane and echo upstream/, details());
    assert.equal(alive(envoyPid), false, "no orphan Envoy");
    assert.equal(alive(cpPid), false, "no orphan control plane");
    await waitFor(() => !run.running, { timeoutMs: 10_000, what: "npm to exit with it", details });
  });

  it("refuses a port already in use with one line naming it, before starting anything", async () => {
    const workDir = makeWorkDir("dev-busy");
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: "127.0.0.1", port: 0 }, resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const [listener, xds, modules, envoyAdmin] = (await freePorts(4)) as [number, number, number, number];
      const run = startDev(
        ["--listener-port", String(listener), "--xds-port", String(xds), "--module-port", String(modules),
          "--admin-port", String(busy), "--envoy-admin-port", String(envoyAdmin)],
        { CP_STATE_FILE: path.join(workDir, "state.json") },
        path.join(workDir, "dev.log"),
      );
      const exit = await run.exited;
      assert.equal(exit.code, 1, outputTail(run));
      const lines = run.stderr().split("\n").filter((line) => line.startsWith("npm run dev:"));
      assert.deepEqual(lines, [
        `npm run dev: port ${busy} (admin API and dashboard: --admin-port / CP_ADMIN_PORT) is already in use on 127.0.0.1: ` +
          "stop what uses it or pick other ports (npm run dev -- --help)",
      ]);
      assert.doesNotMatch(run.output(), /pid \d+/, "nothing was started");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
