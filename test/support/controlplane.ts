import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { TEST_XDS_TOKEN } from "./bootstrap.ts";
import { httpRequest, type HttpResponse } from "./http.ts";
import { freePorts } from "./ports.ts";
import { repoPath } from "./paths.ts";
import { waitFor } from "./wait.ts";

export interface ControlPlanePorts {
  xds: number;
  modules: number;
  admin: number;
  listener: number;
}

export interface ControlPlaneOptions {
  ports: ControlPlanePorts;
  filtersDir: string;
  stateFile: string;
  upstreamPort: number;
  workDir: string;
  /** Distinguishes log files of several runs in one workDir. */
  name?: string;
  /**
   * CP_MODULE_ADDRESS, host:port at which Envoy fetches modules (default: this process's own
   * module server, 127.0.0.1:<ports.modules>). Replicas share one, as behind a load balancer.
   */
  moduleAddress?: string;
  /**
   * Further CP_* variables (e.g. CP_TLS_CERT, CP_ADMIN_TOKEN); they win over the ones above.
   * CP_XDS_TOKEN defaults to TEST_XDS_TOKEN (what rendered bootstraps send); "" turns it off.
   */
  env?: Record<string, string>;
}

import type { FilterView } from "../../controlplane/http/api-view.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../../controlplane/node-flags.ts";
export type { FilterView };

export interface ControlPlaneProcess {
  readonly adminUrl: string;
  readonly logPath: string;
  readonly pid: number;
  api(pathAndQuery: string, method?: string): Promise<HttpResponse>;
  filters(): Promise<FilterView[]>;
  filter(name: string): Promise<FilterView | undefined>;
  clients(): Promise<ClientView[]>;
  tail(lines?: number): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface ClientView {
  node: { id: string; cluster: string };
  cacheMissResends: number;
  types: Record<string, { short: string; sentVersion: string | null; ackedVersion: string | null; lastNack: { message: string } | null }>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function allocatePorts(): Promise<ControlPlanePorts> {
  const [xds, modules, admin, listener] = await freePorts(4);
  return { xds: xds!, modules: modules!, admin: admin!, listener: listener! };
}

/** Runs `controlplane/main.ts` as its own process, exactly as `npm run cp` does, on loopback. */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlaneProcess> {
  const logPath = path.join(opts.workDir, `${opts.name ?? "controlplane"}.log`);
  const logFd = fs.openSync(logPath, "a");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CP_XDS_HOST: "127.0.0.1",
    CP_XDS_PORT: String(opts.ports.xds),
    CP_MODULE_HOST: "127.0.0.1",
    CP_MODULE_PORT: String(opts.ports.modules),
    CP_ADMIN_PORT: String(opts.ports.admin),
    CP_LISTENER_ADDRESS: "127.0.0.1",
    CP_LISTENER_PORT: String(opts.ports.listener),
    CP_UPSTREAM: `127.0.0.1:${opts.upstreamPort}`,
    CP_MODULE_ADDRESS: opts.moduleAddress ?? `127.0.0.1:${opts.ports.modules}`,
    CP_FILTERS_DIR: opts.filtersDir,
    CP_STATE_FILE: opts.stateFile,
    CP_LOG_LEVEL: process.env.CP_LOG_LEVEL ?? "info",
    // Authenticated like a deployment: the token every bootstrap rendered by bootstrap.ts sends.
    CP_XDS_TOKEN: TEST_XDS_TOKEN,
    ...opts.env,
  };
  // What `npm run cp` runs: the bundled sources (scripts/run-controlplane.mjs).
  const child = spawn(process.execPath, [...CONTROLPLANE_NODE_FLAGS, repoPath("scripts", "run-controlplane.mjs")], {
    cwd: repoPath(),
    env,
    stdio: ["ignore", logFd, logFd],
  });
  fs.closeSync(logFd);
  live.add(child);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => {
    exited = true;
    live.delete(child);
    resolve();
  }));
  const adminUrl = `http://127.0.0.1:${opts.ports.admin}`;
  const tail = (lines = 40): string => fs.readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
  const api = (p: string, method = "GET"): Promise<HttpResponse> => httpRequest(`${adminUrl}${p}`, { method });
  await waitFor(async () => {
    if (exited) throw new Error(`control plane exited during start-up:\n${tail()}`);
    try {
      return (await api("/healthz")).status === 200;
    } catch {
      return false;
    }
  }, { timeoutMs: 60_000, what: `control plane /healthz at ${adminUrl}` });
  return {
    adminUrl,
    logPath,
    pid: child.pid!,
    api,
    async filters() {
      return JSON.parse((await api("/api/filters")).body) as FilterView[];
    },
    async filter(name) {
      return (JSON.parse((await api("/api/filters")).body) as FilterView[]).find((f) => f.name === name);
    },
    async clients() {
      return JSON.parse((await api("/api/clients")).body) as ClientView[];
    },
    tail,
    async kill(signal) {
      if (exited) return;
      child.kill(signal);
      await exitedPromise;
    },
  };
}

/**
 * A private copy of the repository's filters (with `_lib`), so tests can edit freely. Rust
 * filters (a Cargo.toml) are left out unless `rust` is set: they need cargo and a build of their
 * own, which only test/e2e/rust-filter.test.ts is about.
 */
export function copyFilters(dest: string, opts: { rust?: boolean } = {}): string {
  const src = repoPath("filters");
  const isRust = (p: string): boolean => path.dirname(p) === src && fs.existsSync(path.join(p, "Cargo.toml"));
  fs.cpSync(src, dest, { recursive: true, filter: (p) => opts.rust === true || !isRust(p) });
  return dest;
}
