/**
 * Runs the real Envoy binary (.tools/bin/envoy) as a child process on loopback for e2e tests.
 *
 * - Always `--disable-hot-restart`: no shared memory and no hot-restart domain socket, so several
 *   Envoys run side by side without distinct `--base-id`s and a crashed run leaves nothing
 *   behind in /dev/shm. (With hot restart enabled, a second Envoy on the same base id fails
 *   with "unable to bind domain socket with base_id=0".) `baseId` is still accepted and passed.
 * - The admin port defaults to 0: Envoy binds a free port and reports it through
 *   `--admin-address-path`; `adminUrl` is read from there.
 * - stdout/stderr (logs, crash backtraces) go to `<workDir>/<name>.log`, kept after the run;
 *   `tail(n)` is meant for assertion messages.
 * - Envoy never outlives the test process: a 'exit' hook SIGKILLs every Envoy still running,
 *   and a tiny watchdog (`sh` blocked reading a pipe from this process) kills it when this
 *   process dies without running hooks (SIGKILL, test-runner timeout).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { writeBootstrap, type BootstrapOpts } from "./bootstrap.ts";
import { httpRequest, type HttpRequestOptions, type HttpResponse } from "./http.ts";
import { envoyBinary } from "./paths.ts";
import { waitFor } from "./wait.ts";

export interface StartEnvoyOptions {
  bootstrap: BootstrapOpts;
  /**
   * A bootstrap of the caller's own (YAML text, e.g. envoy-bootstrap/envoy-ecds-only.yaml with its
   * addresses set): written to <name>.yaml and run as is; `bootstrap` is then not rendered.
   */
  bootstrapYaml?: string;
  /** Directory for the rendered bootstrap, the log and the admin address file (created if missing). */
  workDir: string;
  /**
   * `--base-id`. Not needed: hot restart is disabled, so Envoys on the same base id coexist.
   * Passed through when given.
   */
  baseId?: number;
  /** `--concurrency` (worker threads), default 1 for reproducible numbers. */
  concurrency?: number;
  /** `-l`, default "info". */
  logLevel?: string;
  /** `--component-log-level`, e.g. "wasm:debug,config:debug". */
  componentLogLevel?: string;
  /** Extra command-line arguments, e.g. ["--drain-time-s", "1"]. */
  extraArgs?: string[];
  /** File name stem inside workDir (default "envoy"): <name>.yaml, <name>.log, <name>.admin. */
  name?: string;
  /** How long the admin interface may take to answer after spawn (default 10 s). */
  startTimeoutMs?: number;
}

export interface EnvoyExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface EnvoyProcess {
  readonly pid: number;
  /** e.g. "http://127.0.0.1:40123" */
  readonly adminUrl: string;
  readonly adminPort: number;
  readonly bootstrapPath: string;
  readonly logPath: string;
  /** True until the process has exited. */
  readonly running: boolean;
  /** Exit code once exited (null while running or when killed by a signal). */
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  /** Resolves when Envoy exits, for whatever reason (never rejects). */
  readonly exited: Promise<EnvoyExit>;
  /** Aborted when Envoy exits: pass it as `waitFor(..., { signal })` so waits end with the process. */
  readonly exitSignal: AbortSignal;
  /** Last `lines` lines of the log (default 40), for assertion messages. */
  tail(lines?: number): string;
  /** One line about the process: pid, running or how it exited, log path. */
  describe(): string;
  /** Raw admin request, e.g. `admin("/logging?wasm=debug", { method: "POST" })`. */
  admin(pathAndQuery: string, opts?: HttpRequestOptions): Promise<HttpResponse>;
  /** Body of admin /ready: "LIVE", "PRE_INITIALIZING", "INITIALIZING" or "DRAINING". */
  serverState(): Promise<string>;
  /** Waits until admin /ready says LIVE (default 10 s); fails fast if Envoy exits. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** A counter or gauge by exact name; undefined when Envoy has no such stat. */
  stat(name: string): Promise<number | undefined>;
  /** Counters and gauges (text readouts and histograms left out), optionally by name prefix. */
  stats(prefix?: string): Promise<Record<string, number>>;
  /**
   * Admin /config_dump, optionally `?resource=<resource>` (e.g. "dynamic_active_clusters",
   * "ecds_filters", "dynamic_listeners"). A resource with nothing in it yields `{ configs: [] }`
   * (Envoy answers 404 for some, `{}` for others; a misspelt resource also yields that).
   */
  configDump(resource?: string): Promise<{ configs: unknown[] }>;
  /** True when an active listener on `port` is listed by admin /listeners and accepts TCP on 127.0.0.1. */
  listenerReady(port: number): Promise<boolean>;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 5 s); resolves once exited. Idempotent. */
  stop(timeoutMs?: number): Promise<EnvoyExit>;
}

// ---------------------------------------------------------------- orphan protection

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

/**
 * A shell that blocks reading a pipe whose write end only this process holds. When this process
 * dies, however it dies, `read` hits EOF and the shell SIGKILLs Envoy. Killed once Envoy exits.
 */
function startWatchdog(pid: number): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", 'read _unused; kill -KILL "$1" 2>/dev/null', "envoy-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.on("error", () => {
    // Best effort only: the 'exit' hook still covers normal exits and crashes.
  });
  dog.unref();
  (dog.stdin as net.Socket | null)?.unref();
  return dog;
}

// ---------------------------------------------------------------- helpers

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function readTail(file: string, lines: number): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, 512 * 1024);
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, size - length);
    const all = buffer.toString("utf8").split("\n");
    if (all.at(-1) === "") all.pop();
    return all.slice(-lines).join("\n");
  } catch (err) {
    return `(cannot read ${file}: ${err instanceof Error ? err.message : String(err)})`;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function tcpConnects(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

interface JsonStat {
  name?: unknown;
  value?: unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------- the process

class EnvoyChild implements EnvoyProcess {
  readonly pid: number;
  adminUrl = "";
  adminPort = 0;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  running = true;
  readonly #exited: Promise<EnvoyExit>;
  readonly #exitController = new AbortController();

  constructor(
    private readonly child: ChildProcess,
    readonly bootstrapPath: string,
    readonly logPath: string,
  ) {
    if (child.pid === undefined) throw new Error("envoy: spawn returned no pid");
    this.pid = child.pid;
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.running = false;
        this.exitCode = code;
        this.signalCode = signal;
        live.delete(child);
        this.#exitController.abort(this.failure("envoy exited"));
        resolve({ code, signal });
      });
    });
  }

  /** Accessing `exited` keeps the event loop alive until Envoy exits (the child is unref'd). */
  get exited(): Promise<EnvoyExit> {
    if (this.running) this.child.ref();
    return this.#exited;
  }

  get exitSignal(): AbortSignal {
    return this.#exitController.signal;
  }

  tail(lines = 40): string {
    return readTail(this.logPath, lines);
  }

  describe(): string {
    const status = this.running
      ? "running"
      : this.signalCode !== null
        ? `exited on ${this.signalCode}`
        : `exited with code ${String(this.exitCode)}`;
    return `envoy pid ${this.pid} ${status} (admin ${this.adminUrl || "unknown"}, log ${this.logPath})`;
  }

  private failure(context: string): Error {
    return new Error(`${context}: ${this.describe()}\n--- last log lines ---\n${this.tail()}`);
  }

  /** Starts `start()` unless Envoy is gone, and races it against Envoy's exit. */
  untilExit<T>(start: () => Promise<T>, context: string): Promise<T> {
    if (!this.running) return Promise.reject(this.failure(context));
    const signal = this.exitSignal;
    const work = start();
    return new Promise<T>((resolve, reject) => {
      // The listener is removed as soon as `work` settles, so frequent polling accumulates nothing.
      const onExit = (): void => reject(new Error(`${context}: ${String(signal.reason instanceof Error ? signal.reason.message : signal.reason)}`));
      signal.addEventListener("abort", onExit, { once: true });
      work.then(
        (value) => {
          signal.removeEventListener("abort", onExit);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onExit);
          reject(err);
        },
      );
    });
  }

  admin(pathAndQuery: string, opts: HttpRequestOptions = {}): Promise<HttpResponse> {
    if (!this.adminUrl) return Promise.reject(new Error("envoy admin address not known yet"));
    return httpRequest(`${this.adminUrl}${pathAndQuery}`, opts);
  }

  async serverState(): Promise<string> {
    const res = await this.untilExit(() => this.admin("/ready"), "envoy admin /ready");
    return res.body.trim();
  }

  async waitReady(timeoutMs = 10_000): Promise<void> {
    let state = "";
    // exitSignal ends the wait at once (with the log tail) if Envoy exits meanwhile.
    await waitFor(
      async () => {
        state = await this.serverState();
        return state === "LIVE";
      },
      {
        timeoutMs,
        what: `envoy ${this.adminUrl}/ready to say LIVE (last: ${state || "no answer"})`,
        details: () => this.tail(20),
        signal: this.exitSignal,
      },
    );
  }

  async stats(prefix?: string): Promise<Record<string, number>> {
    const filter = prefix === undefined ? "" : `&filter=${encodeURIComponent(`^${escapeRegex(prefix)}`)}`;
    return this.queryStats(filter);
  }

  async stat(name: string): Promise<number | undefined> {
    const all = await this.queryStats(`&filter=${encodeURIComponent(`^${escapeRegex(name)}$`)}`);
    return all[name];
  }

  private async queryStats(filterQuery: string): Promise<Record<string, number>> {
    const res = await this.untilExit(() => this.admin(`/stats?format=json${filterQuery}`), "envoy admin /stats");
    if (res.status !== 200) throw new Error(`envoy /stats answered ${res.status}: ${res.body.slice(0, 300)}`);
    const parsed: unknown = JSON.parse(res.body);
    const out: Record<string, number> = {};
    const entries = isRecord(parsed) && Array.isArray(parsed.stats) ? (parsed.stats as JsonStat[]) : [];
    for (const entry of entries) {
      // Histograms come as {histograms: ...}; text readouts have string values.
      if (typeof entry.name === "string" && typeof entry.value === "number") out[entry.name] = entry.value;
    }
    return out;
  }

  async configDump(resource?: string): Promise<{ configs: unknown[] }> {
    const query = resource === undefined ? "" : `?resource=${encodeURIComponent(resource)}`;
    const res = await this.untilExit(() => this.admin(`/config_dump${query}`), "envoy admin /config_dump");
    if (res.status === 404 && resource !== undefined) return { configs: [] };
    if (res.status !== 200) throw new Error(`envoy /config_dump${query} answered ${res.status}: ${res.body.slice(0, 300)}`);
    const parsed: unknown = JSON.parse(res.body);
    if (!isRecord(parsed)) throw new Error(`envoy /config_dump${query}: unexpected body ${res.body.slice(0, 300)}`);
    // ?resource= answers {configs: [...]}, or {} when there is nothing of that kind.
    return { ...parsed, configs: Array.isArray(parsed.configs) ? (parsed.configs as unknown[]) : [] };
  }

  async listenerReady(port: number): Promise<boolean> {
    const res = await this.untilExit(() => this.admin("/listeners?format=json"), "envoy admin /listeners");
    if (res.status !== 200) return false;
    const parsed: unknown = JSON.parse(res.body);
    const statuses = isRecord(parsed) && Array.isArray(parsed.listener_statuses) ? (parsed.listener_statuses as unknown[]) : [];
    const listed = statuses.some((status) => {
      if (!isRecord(status)) return false;
      const addresses = [status.local_address, ...(Array.isArray(status.additional_local_addresses) ? status.additional_local_addresses : [])];
      return addresses.some(
        (address) => isRecord(address) && isRecord(address.socket_address) && address.socket_address.port_value === port,
      );
    });
    return listed && (await tcpConnects(port));
  }

  async stop(timeoutMs = 5_000): Promise<EnvoyExit> {
    if (!this.running) return this.#exited;
    this.child.ref();
    this.child.kill("SIGTERM");
    const killer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(killer);
    }
  }
}

/**
 * Renders the bootstrap into `workDir`, spawns Envoy and resolves once its admin interface
 * answers (in any server state: with ADS and no control plane Envoy stays PRE_INITIALIZING).
 * Rejects with the log tail if Envoy exits or the admin does not answer in time.
 */
export async function startEnvoy(opts: StartEnvoyOptions): Promise<EnvoyProcess> {
  const binary = envoyBinary();
  const name = opts.name ?? "envoy";
  fs.mkdirSync(opts.workDir, { recursive: true });
  let bootstrapPath: string;
  if (opts.bootstrapYaml === undefined) bootstrapPath = writeBootstrap(opts.workDir, opts.bootstrap, `${name}.yaml`);
  else fs.writeFileSync((bootstrapPath = path.join(opts.workDir, `${name}.yaml`)), opts.bootstrapYaml);
  const logPath = path.join(opts.workDir, `${name}.log`);
  const adminAddressPath = path.join(opts.workDir, `${name}.admin`);
  fs.rmSync(adminAddressPath, { force: true });

  const args = [
    "-c", bootstrapPath,
    "--disable-hot-restart",
    "--concurrency", String(opts.concurrency ?? 1),
    "-l", opts.logLevel ?? "info",
    "--admin-address-path", adminAddressPath,
  ];
  if (opts.baseId !== undefined) args.push("--base-id", String(opts.baseId));
  if (opts.componentLogLevel !== undefined) args.push("--component-log-level", opts.componentLogLevel);
  args.push(...(opts.extraArgs ?? []));

  const logFd = fs.openSync(logPath, "a");
  let child: ChildProcess;
  try {
    fs.writeSync(logFd, `=== ${new Date().toISOString()} ${binary} ${args.join(" ")}\n`);
    child = spawn(binary, args, { stdio: ["ignore", logFd, logFd], cwd: opts.workDir });
  } finally {
    fs.closeSync(logFd);
  }
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (err) => reject(new Error(`cannot start ${binary}: ${err.message}`)));
  });

  installExitHook();
  live.add(child);
  const envoy = new EnvoyChild(child, bootstrapPath, logPath);
  const dog = startWatchdog(envoy.pid);
  void envoy.exited.then(() => dog.kill("SIGKILL"));
  // Let a test process that forgot stop() end; the 'exit' hook then kills Envoy.
  child.unref();

  try {
    const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    // exitSignal ends these waits at once (with the log tail) if Envoy exits during startup.
    const address = await waitFor(
      () => {
        const text = fs.existsSync(adminAddressPath) ? fs.readFileSync(adminAddressPath, "utf8").trim() : "";
        return text === "" ? undefined : text;
      },
      { timeoutMs: startTimeoutMs, what: `envoy to write ${adminAddressPath}`, intervalMs: 20, signal: envoy.exitSignal },
    );
    envoy.adminPort = Number(address.slice(address.lastIndexOf(":") + 1));
    envoy.adminUrl = `http://${address}`;
    await waitFor(async () => (await envoy.admin("/ready", { timeoutMs: 1000 })).status > 0, {
      timeoutMs: startTimeoutMs,
      what: `envoy admin ${envoy.adminUrl} to answer`,
      intervalMs: 20,
      signal: envoy.exitSignal,
    });
  } catch (err) {
    if (envoy.running) await envoy.stop(2_000);
    // untilExit's error already carries the log tail; a timeout's does not.
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      reason.includes("--- last log lines ---")
        ? `envoy did not start: ${reason}`
        : `envoy did not start (${reason}): ${envoy.describe()}\n--- last log lines ---\n${envoy.tail()}`,
    );
  }
  return envoy;
}

export interface ValidateResult {
  ok: boolean;
  code: number | null;
  /** Envoy's combined stdout/stderr ("configuration '<file>' OK" on success). */
  output: string;
}

/** `envoy --mode validate -c <file>`: loads and checks the config without serving. */
export function validateConfig(file: string, timeoutMs = 30_000): Promise<ValidateResult> {
  const binary = envoyBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["--mode", "validate", "-c", file, "-l", "warning", "--disable-hot-restart"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, code, output: Buffer.concat(chunks).toString("utf8") });
    });
  });
}
