/**
 * `npm run dev` options: flags win over environment variables, which win over defaults. The
 * control plane's own variables (CP_*) name its ports, so `CP_ADMIN_PORT=19001 npm run dev` and
 * `npm run dev -- --admin-port 19001` do the same. Pure: argv and env in, options or an error out.
 */
import path from "node:path";

export type PortKey = "listener" | "xds" | "modules" | "admin" | "envoyAdmin" | "echo";

export interface PortSpec {
  key: PortKey;
  flag: string;
  env: string;
  default: number;
  /** What listens there, for the help text and the "port in use" error. */
  what: string;
}

export const PORTS: readonly PortSpec[] = [
  { key: "listener", flag: "--listener-port", env: "CP_LISTENER_PORT", default: 10000, what: "Envoy's listener (the curl target)" },
  { key: "xds", flag: "--xds-port", env: "CP_XDS_PORT", default: 18000, what: "control plane xDS (gRPC)" },
  { key: "modules", flag: "--module-port", env: "CP_MODULE_PORT", default: 18080, what: "control plane module server" },
  { key: "admin", flag: "--admin-port", env: "CP_ADMIN_PORT", default: 19000, what: "admin API and dashboard" },
  { key: "envoyAdmin", flag: "--envoy-admin-port", env: "ENVOY_ADMIN_PORT", default: 9901, what: "Envoy admin" },
  { key: "echo", flag: "--echo-port", env: "DEV_ECHO_PORT", default: 0, what: "echo upstream (0: any free port)" },
];

export interface DevOptions {
  ports: Record<PortKey, number>;
  /** Absolute path of the AssemblyScript filters the control plane watches. */
  filtersDir: string;
  /** Envoy's `-l` (trace, debug, info, warning, error, critical, off). */
  envoyLogLevel: string;
}

export type ParseResult = { help: true } | { help: false; options: DevOptions } | { error: string };

const ENVOY_LEVELS = ["trace", "debug", "info", "warning", "warn", "error", "critical", "off"];

export function usage(): string {
  const rows: [string, string, string][] = [
    ...PORTS.map((p): [string, string, string] => [`${p.flag} N`, p.env, `${p.what} (default ${p.default})`]),
    ["--filters-dir DIR", "CP_FILTERS_DIR", "AssemblyScript filters to watch (default ./filters)"],
    ["--envoy-log-level L", "ENVOY_LOG_LEVEL", "Envoy's log level (default warning; wasm logs stay at info)"],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  const envWidth = Math.max(...rows.map((r) => r[1].length));
  return [
    "Usage: npm run dev -- [flags]   (each flag can also be set by its environment variable)",
    "Runs the control plane, a local Envoy (.tools/bin/envoy) and an echo upstream on 127.0.0.1.",
    ...rows.map(([flag, env, text]) => `  ${flag.padEnd(width)}  ${env.padEnd(envWidth)}  ${text}`),
    "Other CP_* variables (e.g. CP_STATE_FILE, CP_LOG_LEVEL) reach the control plane unchanged.",
  ].join("\n");
}

function parsePort(text: string, source: string): number | string {
  if (!/^\d+$/.test(text) || Number(text) > 65535) return `${source}: expected a port number 0-65535, got "${text}"`;
  return Number(text);
}

export function parseDevOptions(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): ParseResult {
  const flags = new Map<string, string>();
  const known = new Set([...PORTS.map((p) => p.flag), "--filters-dir", "--envoy-log-level"]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") return { help: true };
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!known.has(name)) return { error: `unknown argument "${arg}" (see npm run dev -- --help)` };
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : argv[i + 1];
    if (eq < 0) i++;
    if (value === undefined || value === "") return { error: `${name} needs a value` };
    flags.set(name, value);
  }

  const ports = {} as Record<PortKey, number>;
  for (const spec of PORTS) {
    const fromFlag = flags.get(spec.flag);
    const fromEnv = env[spec.env];
    const [text, source] = fromFlag !== undefined ? [fromFlag, spec.flag] : fromEnv ? [fromEnv, spec.env] : [undefined, ""];
    if (text === undefined) {
      ports[spec.key] = spec.default;
      continue;
    }
    const port = parsePort(text, source);
    if (typeof port === "string") return { error: port };
    if (port === 0 && spec.key !== "echo") return { error: `${source}: port 0 is only allowed for the echo upstream` };
    ports[spec.key] = port;
  }
  // Two parts on one port would fail half-way through start-up: refuse before starting any.
  const seen = new Map<number, PortSpec>();
  for (const spec of PORTS) {
    const port = ports[spec.key];
    const other = seen.get(port);
    if (port !== 0 && other) return { error: `port ${port} is given for both ${other.what} and ${spec.what}` };
    seen.set(port, spec);
  }

  const filtersDir = path.resolve(cwd, flags.get("--filters-dir") ?? (env.CP_FILTERS_DIR || "filters"));
  const envoyLogLevel = flags.get("--envoy-log-level") ?? (env.ENVOY_LOG_LEVEL || "warning");
  if (!ENVOY_LEVELS.includes(envoyLogLevel)) {
    return { error: `Envoy log level "${envoyLogLevel}": expected one of ${ENVOY_LEVELS.join(", ")}` };
  }
  return { help: false, options: { ports, filtersDir, envoyLogLevel } };
}
