/**
 * `npm run dev`: the whole demo on one machine without Docker. Starts an echo upstream (in this
 * process), the control plane (`controlplane/main.ts`, as `npm run cp` runs it) and the real
 * Envoy from `.tools/bin/envoy`, bootstrapped from envoy-bootstrap/envoy.yaml rendered for
 * loopback with an xDS token made for this run; everything binds 127.0.0.1. Prints the curl to
 * try and the dashboard URL, streams every process's log with a prefix, and on Ctrl-C (SIGINT,
 * SIGTERM, SIGHUP) stops all three. `npm run dev -- --help` lists the ports and flags.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { writeBootstrap } from "./bootstrap.ts";
import { describeExit, spawnChild, type Child, type ChildExit } from "./children.ts";
import { startEchoUpstream, type EchoRequest, type EchoUpstream } from "./echo.ts";
import { envoyLevel, paint, pinoFormatter, prefixed } from "./logs.ts";
import { parseDevOptions, PORTS, usage, type DevOptions } from "./options.ts";
import { envoyBinary, repoPath, repoRoot } from "./paths.ts";
import { busyPorts, describeBusy } from "./ports.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../controlplane/node-flags.ts";

const HOST = "127.0.0.1";
const colorize = process.stdout.isTTY === true && !process.env.NO_COLOR;
const dev = prefixed("dev", "bold", colorize);

/** GET on loopback with a short timeout; resolves with status and body, rejects on no answer. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within 2 s`)));
    req.on("error", reject);
  });
}

function tcpConnects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Polls `probe` until it is true; throws after `timeoutMs` naming `what`, or when `abort` fires. */
async function waitUntil(probe: () => Promise<boolean>, what: string, timeoutMs: number, abort: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (abort.aborted) throw abort.reason instanceof Error ? abort.reason : new Error(String(abort.reason));
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The filter to suggest editing: add-header when present, else the first filter folder. */
function filterToEdit(filtersDir: string): string | undefined {
  const names = fs.readdirSync(filtersDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith("_") && !entry.name.startsWith("."))
    .map((entry) => entry.name)
    .sort();
  const name = names.includes("add-header") ? "add-header" : names[0];
  if (name === undefined) return undefined;
  const file = path.join(filtersDir, name, "index.ts");
  const relative = path.relative(process.cwd(), file);
  return relative.startsWith("..") ? file : relative;
}

/** Request headers worth showing in the echo log: the x-* ones a filter may have added. */
function describeRequest(request: EchoRequest): string {
  const boring = new Set(["x-forwarded-proto", "x-request-id"]);
  const shown = Object.entries(request.headers)
    .filter(([name]) => name.startsWith("x-") && !name.startsWith("x-envoy-") && !boring.has(name))
    .map(([name, value]) => `${name}=${value}`);
  return [request.method, request.path, ...shown].join(" ");
}

/** The control plane's environment: the caller's, with everything the loopback stack fixes. */
function controlPlaneEnv(options: DevOptions, echoPort: number, xdsToken: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The rendered bootstrap speaks plaintext xDS: TLS settings meant for another setup would
  // make the control plane refuse that Envoy.
  for (const key of ["CP_TLS_CERT", "CP_TLS_KEY", "CP_TLS_CLIENT_CA", "CP_MODULE_TLS_CA_FOR_ENVOY"]) delete env[key];
  const { ports } = options;
  return {
    ...env,
    CP_XDS_HOST: HOST,
    CP_XDS_PORT: String(ports.xds),
    // Passed in the environment, not as a flag: flags show in `ps`.
    CP_XDS_TOKEN: xdsToken,
    CP_MODULE_HOST: HOST,
    CP_MODULE_PORT: String(ports.modules),
    CP_MODULE_ADDRESS: `${HOST}:${ports.modules}`,
    CP_ADMIN_HOST: HOST,
    CP_ADMIN_PORT: String(ports.admin),
    CP_LISTENER_ADDRESS: HOST,
    CP_LISTENER_PORT: String(ports.listener),
    CP_UPSTREAM: `${HOST}:${echoPort}`,
    CP_FILTERS_DIR: options.filtersDir,
  };
}

async function main(): Promise<number> {
  const parsed = parseDevOptions(process.argv.slice(2), process.env, process.cwd());
  if ("error" in parsed) {
    console.error(`npm run dev: ${parsed.error}`);
    return 2;
  }
  if (parsed.help) {
    console.log(usage());
    return 0;
  }
  const { options } = parsed;
  const { ports } = options;

  // Everything that can be checked before starting anything: one line each, nothing left behind.
  if (!fs.statSync(options.filtersDir, { throwIfNoEntry: false })?.isDirectory()) {
    console.error(`npm run dev: no filters directory at ${options.filtersDir} (--filters-dir / CP_FILTERS_DIR)`);
    return 1;
  }
  let envoyBin: string;
  try {
    envoyBin = envoyBinary();
  } catch (err) {
    console.error(`npm run dev: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const busy = await busyPorts(HOST, PORTS.map((spec) => ({ port: ports[spec.key], what: `${spec.what}: ${spec.flag} / ${spec.env}` })));
  if (busy.length > 0) {
    console.error(`npm run dev: ${describeBusy(HOST, busy)}`);
    return 1;
  }

  const started = Date.now();
  dev.line(`npm run dev (pid ${process.pid}): starting the echo upstream, the control plane and Envoy`);
  const xdsToken = randomBytes(24).toString("hex");
  // Private (mkdtemp makes it 0700): the rendered bootstrap holds this run's xDS token.
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-dev-"));
  let echo: EchoUpstream | undefined;
  let cp: Child | undefined;
  let envoy: Child | undefined;
  const abort = new AbortController();

  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      abort.abort(new Error("stopping"));
      // Envoy first, so it does not log the control plane going away.
      if (envoy) await envoy.stop();
      if (cp) await cp.stop();
      await echo?.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  /** A child that exits cleanly was asked to (Ctrl-C reaches it too): not a failure. */
  const onChildExit = (name: string, exit: ChildExit): void => {
    const clean = exit.code === 0 || exit.signal === "SIGINT" || exit.signal === "SIGTERM";
    finish(clean ? 0 : 1, `${name} ${describeExit(exit)}: stopping the rest`);
  };
  const finish = (code: number, why: string): void => {
    if (stopping) return;
    dev.line(why, code === 0 ? 30 : 50);
    void stopAll().then(() => {
      dev.line("stopped envoy, control plane and echo upstream");
      process.exit(code);
    });
  };
  // A terminal's Ctrl-C reaches the whole process group: the children get it too and start
  // exiting on their own; stopAll() waits for them (and escalates if one hangs).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => finish(0, `${signal}: stopping`));
  }

  try {
    const echoLog = prefixed("echo", "green", colorize);
    echo = await startEchoUpstream({ port: ports.echo, onRequest: (request) => echoLog.line(describeRequest(request)) });

    const cpLog = prefixed("cp", "cyan", colorize);
    const format = pinoFormatter();
    cp = await spawnChild({
      name: "control plane",
      command: process.execPath,
      args: [...CONTROLPLANE_NODE_FLAGS, repoPath("scripts", "run-controlplane.mjs")], // what `npm run cp` runs
      cwd: repoRoot,
      env: controlPlaneEnv(options, echo.port, xdsToken),
      onLine: (line) => {
        const formatted = format(line);
        if (formatted === null) return;
        cpLog.line(formatted.text, formatted.level);
        for (const extra of formatted.extra) cpLog.line(`    ${extra.trim()}`, formatted.level);
      },
    });
    const cpChild = cp;
    void cp.exited.then((exit) => onChildExit("control plane", exit));
    dev.line(`control plane (pid ${cp.pid}): xDS ${HOST}:${ports.xds}, modules :${ports.modules}, ` +
      `admin :${ports.admin}, filters ${options.filtersDir}`);
    await waitUntil(async () => {
      if (!cpChild.running) throw new Error("control plane exited");
      return (await get(`http://${HOST}:${ports.admin}/healthz`)).status === 200;
    }, `the control plane's /healthz on :${ports.admin}`, 60_000, abort.signal);

    const bootstrap = writeBootstrap(workDir, { xdsPort: ports.xds, adminPort: ports.envoyAdmin, xdsToken });
    const args = ["-c", bootstrap, "--disable-hot-restart", "--concurrency", "1", "-l", options.envoyLogLevel,
      "--log-format", "%T.%e %l [%n] %v"];
    // Filters' own log lines (logInfo) stay visible at the default level.
    if (["warning", "warn", "error", "critical", "off"].includes(options.envoyLogLevel)) args.push("--component-log-level", "wasm:info");
    const envoyLog = prefixed("envoy", "magenta", colorize);
    envoy = await spawnChild({
      name: "envoy", command: envoyBin, args, cwd: workDir,
      onLine: (line) => envoyLog.line(line, envoyLevel(line)),
    });
    const envoyChild = envoy;
    void envoy.exited.then((exit) => onChildExit("envoy", exit));
    dev.line(`envoy (pid ${envoy.pid}): ${envoyBin}, admin ${HOST}:${ports.envoyAdmin}, bootstrap ${bootstrap}`);
    // LIVE: Envoy has its listener, clusters and every ECDS filter from the control plane.
    await waitUntil(async () => {
      if (!envoyChild.running) throw new Error("envoy exited");
      const ready = await get(`http://${HOST}:${ports.envoyAdmin}/ready`);
      return ready.status === 200 && ready.body.trim() === "LIVE" && (await tcpConnects(ports.listener));
    }, `Envoy to be LIVE with its listener on :${ports.listener}`, 60_000, abort.signal);
  } catch (err) {
    if (stopping) return 0; // a signal or a crash is already being handled
    finish(1, `start-up failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }

  const edit = filterToEdit(options.filtersDir);
  const url = `http://${HOST}:${ports.listener}/headers`;
  const lines = [
    `ready in ${((Date.now() - started) / 1000).toFixed(1)} s: Envoy :${ports.listener} -> Wasm filters -> echo upstream :${echo.port}`,
    `  try it:     ${paint(`curl -si ${url}`, "bold", colorize)}`,
    `  dashboard:  ${paint(`http://${HOST}:${ports.admin}/`, "bold", colorize)}`,
    ...(edit ? [`  edit:       ${edit} (saved changes are live on the next curl)`] : []),
    "  Ctrl-C stops Envoy, the control plane and the echo upstream",
  ];
  for (const line of lines) dev.line(line);
  return 0;
}

main().then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`npm run dev: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  },
);
