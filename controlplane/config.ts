import net from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import type { HostPort } from "./xds/resources.ts";

export interface Config {
  xdsHost: string;
  xdsPort: number;
  moduleHost: string;
  modulePort: number;
  adminHost: string;
  adminPort: number;
  listenerAddress: string;
  listenerPort: number;
  upstream: HostPort;
  moduleAddress: HostPort;
  filtersDir: string;
  stateFile: string;
  logLevel: string;
}

interface Setting {
  env: string;
  flag: string;
  help: string;
  default: (partial: Record<string, string>) => string;
}

// One table drives env parsing, flags and --help, so they cannot drift apart.
const SETTINGS: readonly Setting[] = [
  { env: "CP_XDS_PORT", flag: "xds-port", help: "gRPC ADS port Envoy connects to", default: () => "18000" },
  { env: "CP_XDS_HOST", flag: "xds-host", help: "interface the ADS server binds", default: () => "0.0.0.0" },
  { env: "CP_MODULE_PORT", flag: "module-port", help: "HTTP port serving /modules/<sha256>.wasm", default: () => "18080" },
  { env: "CP_MODULE_HOST", flag: "module-host", help: "interface the module server binds", default: () => "0.0.0.0" },
  { env: "CP_ADMIN_PORT", flag: "admin-port", help: "admin API port", default: () => "19000" },
  { env: "CP_ADMIN_HOST", flag: "admin-host", help: "interface the admin API binds (loopback by default)", default: () => "127.0.0.1" },
  { env: "CP_LISTENER_PORT", flag: "listener-port", help: "port of the listener pushed to Envoy", default: () => "10000" },
  { env: "CP_LISTENER_ADDRESS", flag: "listener-address", help: "address of the listener pushed to Envoy", default: () => "0.0.0.0" },
  { env: "CP_UPSTREAM", flag: "upstream", help: "host:port Envoy routes requests to", default: () => "echo:8080" },
  { env: "CP_MODULE_ADDRESS", flag: "module-address", help: "host:port at which Envoy reaches the module server", default: (p) => `host.docker.internal:${p.CP_MODULE_PORT ?? "18080"}` },
  { env: "CP_FILTERS_DIR", flag: "filters-dir", help: "directory of AssemblyScript filters", default: () => "./filters" },
  { env: "CP_STATE_FILE", flag: "state-file", help: "where enable/disable choices persist", default: () => "./.state/state.json" },
  { env: "CP_LOG_LEVEL", flag: "log-level", help: "pino log level", default: () => "info" },
];

export class ConfigError extends Error {}

export function usage(): string {
  const lines = SETTINGS.map((s) => `  --${s.flag.padEnd(18)} ${s.env.padEnd(20)} ${s.help} (default ${s.default({})})`);
  return ["Usage: npm run cp -- [flags]   (each flag can also be set by its environment variable)", ...lines].join("\n");
}

/** Flags win over environment variables, which win over defaults. Throws one ConfigError line per bad value. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config | "help" {
  const options = Object.fromEntries(SETTINGS.map((s) => [s.flag, { type: "string" as const }]));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`);
  }
  if (parsed.values.help) return "help";
  const raw: Record<string, string> = {};
  for (const s of SETTINGS) {
    const fromFlag = (parsed.values as Record<string, string | boolean | undefined>)[s.flag];
    const value = typeof fromFlag === "string" ? fromFlag : env[s.env];
    if (value !== undefined && value !== "") raw[s.env] = value;
  }
  const get = (name: string): string => raw[name] ?? SETTINGS.find((s) => s.env === name)!.default(raw);
  return {
    xdsHost: host(get, "CP_XDS_HOST"),
    xdsPort: port(get, "CP_XDS_PORT"),
    moduleHost: host(get, "CP_MODULE_HOST"),
    modulePort: port(get, "CP_MODULE_PORT"),
    adminHost: host(get, "CP_ADMIN_HOST"),
    adminPort: port(get, "CP_ADMIN_PORT"),
    listenerAddress: ip(get, "CP_LISTENER_ADDRESS"),
    listenerPort: port(get, "CP_LISTENER_PORT"),
    upstream: hostPort(get, "CP_UPSTREAM"),
    moduleAddress: hostPort(get, "CP_MODULE_ADDRESS"),
    filtersDir: path.resolve(get("CP_FILTERS_DIR")),
    stateFile: path.resolve(get("CP_STATE_FILE")),
    logLevel: oneOf(get, "CP_LOG_LEVEL", ["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
  };
}

function port(get: (n: string) => string, name: string): number {
  const v = get(name);
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected a port number 1-65535`);
  return n;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function host(get: (n: string) => string, name: string): string {
  const v = get(name);
  if (!net.isIP(v) && !HOSTNAME.test(v)) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected an IP address or host name`);
  return v;
}

function ip(get: (n: string) => string, name: string): string {
  const v = get(name);
  if (!net.isIP(v)) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected an IP address (Envoy binds listeners to IPs)`);
  return v;
}

function hostPort(get: (n: string) => string, name: string): HostPort {
  const v = get(name);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d+)$/.exec(v);
  const h = m?.[1] ?? m?.[2];
  const p = Number(m?.[3]);
  if (!m || !h || (!net.isIP(h) && !HOSTNAME.test(h)) || !(p >= 1 && p <= 65535)) {
    throw new ConfigError(`${name}=${JSON.stringify(v)}: expected host:port, e.g. 127.0.0.1:8080 or echo:8080`);
  }
  return { host: h, port: p };
}

function oneOf(get: (n: string) => string, name: string, allowed: string[]): string {
  const v = get(name);
  if (!allowed.includes(v)) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected one of ${allowed.join(", ")}`);
  return v;
}
