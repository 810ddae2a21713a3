/**
 * Everything an isolation run needs, on loopback: an echo upstream, the tampering module proxy,
 * the control plane (its own process, exactly as `npm run cp`) with add-header plus the
 * misbehaving fixtures (disabled; the scenarios run uploaded copies of them), and the real
 * Envoy (--concurrency 1, so "the worker" is one thread). Envoy can be replaced mid-run (the
 * spin scenario has to kill it).
 */
import fs from "node:fs";
import path from "node:path";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../../../test/support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../../../test/support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../../../test/support/envoy.ts";
import { repoPath } from "../../../test/support/paths.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { startTamperProxy, type TamperProxy } from "./tamper-proxy.ts";

/** Fixtures under test/fixtures/filters/ the scenarios use, with the root id each registers. */
export const FIXTURES = ["abort-request", "abort-configure", "memory-grow", "spin", "capability-probe"] as const;
export type Fixture = (typeof FIXTURES)[number];

/** CP_AUTO_DISABLE_AFTER for the run: the product's default. */
export const AUTO_DISABLE_AFTER = 5;

export interface IsolationStack {
  readonly workDir: string;
  /** The control plane's filters folder (a private copy): scenarios may add folders. */
  readonly filtersDir: string;
  readonly ports: ControlPlanePorts;
  readonly echo: EchoUpstream;
  readonly proxy: TamperProxy;
  readonly cp: ControlPlaneProcess;
  /** The current Envoy (a new object after restartEnvoy). */
  readonly envoy: EnvoyProcess;
  /** Module bytes of each fixture as the control plane built them, and of add-header. */
  readonly modules: ReadonlyMap<Fixture | "add-header", Uint8Array>;
  /**
   * Kills the current Envoy (SIGTERM, SIGKILL after killAfterMs; nothing if it already exited)
   * and starts a fresh one, with `extraArgs` added to its command line.
   */
  restartEnvoy(killAfterMs: number, extraArgs?: readonly string[]): Promise<{ exit: string; readyMs: number }>;
  /** Log tails for error messages. */
  details(): string;
  close(): Promise<void>;
}

export interface StackOptions {
  workDir: string;
  /** Called with each started part's stop function, so the caller's cleanup (Ctrl-C) covers it. */
  onStarted?: (what: string, stop: () => Promise<void>) => void;
}

function fixtureDir(name: string): string {
  return repoPath("test", "fixtures", "filters", name);
}

export async function startIsolationStack(opts: StackOptions): Promise<IsolationStack> {
  const { workDir } = opts;
  const filtersDir = copyFilters(path.join(workDir, "filters"));
  for (const name of FIXTURES) {
    const dest = path.join(filtersDir, name);
    fs.cpSync(fixtureDir(name), dest, { recursive: true });
    // Built and served, but switched off: each scenario uploads its own copy under a fresh
    // name, so a VM one scenario poisoned never leaks into the next.
    const manifestPath = path.join(dest, "filter.json");
    const manifest = fs.existsSync(manifestPath) ? (JSON.parse(fs.readFileSync(manifestPath, "utf8")) as Record<string, unknown>) : {};
    fs.writeFileSync(manifestPath, JSON.stringify({ ...manifest, enabled: false }));
  }
  const stops: { what: string; stop: () => Promise<void> }[] = [];
  const started = (what: string, stop: () => Promise<void>): void => {
    stops.push({ what, stop });
    opts.onStarted?.(what, stop);
  };
  const ports = await allocatePorts();
  const echo = await startEchoUpstream();
  started("echo upstream", () => echo.close());
  const proxy = await startTamperProxy(ports.modules);
  started("tamper proxy", () => proxy.close());
  const cp = await startControlPlane({
    ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir,
    moduleAddress: `127.0.0.1:${proxy.port}`,
    // Automatic disable (controlplane/health/) after this many VM crashes in 60 s: a FAIL_RELOAD
    // row's single crash stays below it; the auto-disable row crashes the VM every reload.
    env: { CP_AUTO_DISABLE_AFTER: String(AUTO_DISABLE_AFTER) },
  });
  started("control plane", () => cp.kill("SIGTERM"));
  let envoy: EnvoyProcess | undefined;
  let generation = 0;
  const launch = (extraArgs: readonly string[] = []): Promise<EnvoyProcess> => startEnvoy({
    bootstrap: { xdsPort: ports.xds, nodeId: "isolation", nodeCluster: "isolation" },
    workDir, name: `envoy-${generation++}`, concurrency: 1, extraArgs: ["--drain-time-s", "1", ...extraArgs],
  });
  envoy = await launch();
  started("envoy", async () => void (await envoy?.stop(2_000)));
  const details = (): string => `--- envoy (${envoy?.describe()})\n${envoy?.tail(25)}\n--- control plane\n${cp.tail(25)}`;
  await envoy.waitReady(60_000);

  // Every fixture built: fetch its bytes from the module server, as Envoy would.
  const modules = new Map<Fixture | "add-header", Uint8Array>();
  for (const name of ["add-header", ...FIXTURES] as const) {
    const f = await waitFor(async () => {
      const view = await cp.filter(name);
      if (view?.status === "error") throw new Error(`${name} failed to build: ${view.error ?? "?"}`);
      return view?.status === "ok" && view.sha256 ? view : undefined;
    }, { what: `${name} built`, timeoutMs: 90_000, details });
    const res = await fetch(`http://127.0.0.1:${ports.modules}/modules/${f.sha256}.wasm`);
    if (!res.ok) throw new Error(`module server: ${name} (${f.sha256}) answered ${res.status}`);
    modules.set(name, new Uint8Array(await res.arrayBuffer()));
  }

  return {
    workDir, filtersDir, ports, echo, proxy, cp, modules, details,
    get envoy(): EnvoyProcess {
      if (!envoy) throw new Error("envoy not started");
      return envoy;
    },
    async restartEnvoy(killAfterMs, extraArgs) {
      const old = envoy!;
      const exit = await old.stop(killAfterMs);
      const how = exit.signal ? `killed by ${exit.signal}` : `exited with code ${String(exit.code)}`;
      const t0 = Date.now();
      envoy = await launch(extraArgs);
      await envoy.waitReady(60_000);
      return { exit: how, readyMs: Date.now() - t0 };
    },
    async close() {
      for (const { what, stop } of stops.reverse()) {
        try {
          await stop();
        } catch (err) {
          console.error(`isolation cleanup: ${what}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    },
  };
}
