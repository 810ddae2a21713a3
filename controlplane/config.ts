import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { resolveBuildCpus } from "./compile/placement.ts";
import { parseEtcdUrl } from "./store/etcd-url.ts";
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
  /** CP_ROUTES_FILE: the routes (docs/routes.md), watched; absent: every request to `upstream`. */
  routesFile?: string;
  moduleAddress: HostPort;
  /**
   * Further endpoints of the module cluster (CP_MODULE_PEERS: the other replicas' module
   * servers): Envoy fetches from any of them, so a module outlives any one replica.
   */
  modulePeers: HostPort[];
  filtersDir: string;
  /** Operator state (enable/disable, order, pins, ...): CP_STATE_FILE, default <state dir>/state.json. */
  stateFile: string;
  /**
   * CP_STATE_DIR when set: modules by sha256 and per-filter records (uploads, retained history,
   * the build cache). Unset: the folder of stateFile (./.state by default); see stateDirOf().
   */
  stateDir?: string;
  logLevel: string;
  /** Largest module ever announced to Envoy, built or uploaded (CP_MAX_MODULE_BYTES). */
  maxModuleBytes: number;
  /** Nice value (0-19) of the compile thread, so a build yields the CPU to a co-located Envoy. */
  buildNice: number;
  /** CP_BUILD_CPUS when set: the CPUs builds run on (canonical taskset list, checked against this process's CPUs). */
  buildCpus?: string;
  /** CP_BUILD_WORKERS when set: compiles at once; unset: defaultBuildWorkers(). */
  buildWorkers?: number;
  /** Runtime failures of a filter (Envoy stats) within autoDisableWindowS that trigger a rollback or disable; 0 = off. */
  autoDisableAfter: number;
  autoDisableWindowS: number;
  /** Bearer token the admin API requires (CP_ADMIN_TOKEN); absent: no check (loopback only). */
  adminToken?: string;
  /**
   * Bearer token every call on the xDS port must carry (CP_XDS_TOKEN; Envoy sends it as
   * grpc_service initial_metadata); absent: none, allowed only on loopback or with mTLS.
   */
  xdsToken?: string;
  /** TLS for the xDS port and the module server (CP_TLS_CERT, CP_TLS_KEY, ...); absent: plaintext. */
  tls?: TlsConfig;
  /** CP_STORE: the embedded state directory (default) or etcd shared by replicas. */
  store: StoreConfig;
  /** CP_REPLICA_ID: this replica's name in etcd and in /api/clients. */
  replicaId: string;
}

export type StoreConfig = { kind: "dir" } | { kind: "etcd"; url: string; hosts: string[]; prefix: string; leaseTtlS: number };

/** Files of the control plane's TLS setup (read and checked by tls.ts at start-up). */
export interface TlsConfig {
  /** Server certificate chain (PEM), for the xDS port and the module server. */
  certFile: string;
  /** Its private key (PEM). */
  keyFile: string;
  /** CA (PEM) whose signature a client certificate must carry on the xDS port: mTLS. */
  clientCaFile?: string;
  /**
   * CA file that Envoy (on its own machine, as its path reads there) trusts for the module
   * server's certificate: pushed in the module cluster's UpstreamTlsContext.
   */
  moduleCaForEnvoy: string;
}

interface Setting {
  env: string;
  flag: string;
  help: string;
  /** "" means unset. */
  default: (partial: Record<string, string>) => string;
  /** How --help shows the default when it is not a plain value. */
  defaultHelp?: string;
}

// One table drives env parsing, flags and --help, so they cannot drift apart.
const SETTINGS: readonly Setting[] = [
  { env: "CP_XDS_PORT", flag: "xds-port", help: "gRPC ADS port Envoy connects to", default: () => "18000" },
  { env: "CP_XDS_HOST", flag: "xds-host", help: "interface the ADS server binds (loopback by default; beyond it, clients must authenticate by token or mTLS)", default: () => "127.0.0.1" },
  { env: "CP_MODULE_PORT", flag: "module-port", help: "HTTP port serving /modules/<sha256>.wasm", default: () => "18080" },
  { env: "CP_MODULE_HOST", flag: "module-host", help: "interface the module server binds", default: () => "0.0.0.0" },
  { env: "CP_ADMIN_PORT", flag: "admin-port", help: "admin API port", default: () => "19000" },
  { env: "CP_ADMIN_HOST", flag: "admin-host", help: "interface the admin API binds (loopback by default)", default: () => "127.0.0.1" },
  { env: "CP_LISTENER_PORT", flag: "listener-port", help: "port of the listener pushed to Envoy", default: () => "10000" },
  { env: "CP_LISTENER_ADDRESS", flag: "listener-address", help: "address of the listener pushed to Envoy", default: () => "0.0.0.0" },
  { env: "CP_UPSTREAM", flag: "upstream", help: "host:port Envoy routes requests to", default: () => "echo:8080" },
  {
    env: "CP_ROUTES_FILE", flag: "routes-file", default: () => "", defaultHelp: "none: every request to CP_UPSTREAM",
    help: "YAML file of upstreams, virtual hosts and routes (docs/routes.md), watched: an edit goes live, a bad one is refused",
  },
  { env: "CP_MODULE_ADDRESS", flag: "module-address", help: "host:port at which Envoy reaches the module server", default: (p) => `host.docker.internal:${p.CP_MODULE_PORT ?? "18080"}` },
  {
    env: "CP_MODULE_PEERS", flag: "module-peers", default: () => "", defaultHelp: "none",
    help: "comma-separated host:port of the other replicas' module servers: more endpoints of Envoy's module cluster",
  },
  { env: "CP_FILTERS_DIR", flag: "filters-dir", help: "directory of AssemblyScript filters", default: () => "./filters" },
  { env: "CP_STATE_DIR", flag: "state-dir", help: "where modules (built and uploaded, by sha256), filter histories and the build cache persist", default: (p) => (p.CP_STATE_FILE ? path.dirname(p.CP_STATE_FILE) : "./.state"), defaultHelp: "./.state, or the folder of the state file when only that is set" },
  { env: "CP_STATE_FILE", flag: "state-file", help: "where operator choices (enable/disable, order, pins, ...) persist", default: (p) => path.join(p.CP_STATE_DIR ?? "./.state", "state.json"), defaultHelp: "<CP_STATE_DIR>/state.json" },
  {
    env: "CP_STORE", flag: "store", default: () => "dir",
    help: "where shared state lives: `dir` (CP_STATE_DIR, one replica) or etcd://host:port[,host:port...][/prefix] (replicas share it)",
  },
  {
    env: "CP_REPLICA_ID", flag: "replica-id", default: () => "", defaultHelp: "<hostname>-<pid>",
    help: "this replica's name (etcd election, /api/replicas, /api/clients)",
  },
  { env: "CP_ETCD_LEASE_TTL", flag: "etcd-lease-ttl", help: "seconds before a dead builder replica is replaced (its etcd lease expires)", default: () => "5" },
  { env: "CP_LOG_LEVEL", flag: "log-level", help: "pino log level", default: () => "info" },
  { env: "CP_MAX_MODULE_BYTES", flag: "max-module-bytes", help: "largest Wasm module (bytes) built or uploaded that is ever pushed to Envoy", default: () => String(8 * 1024 * 1024), defaultHelp: "8388608 = 8 MiB" },
  { env: "CP_BUILD_WORKERS", flag: "build-workers", help: "compiles run at once (each a worker thread of ~250 MB while warm); those beyond cores-1 run at nice 19 so a co-located Envoy keeps a core", default: () => "", defaultHelp: "cores, at most 4" },
  {
    env: "CP_BUILD_CPUS", flag: "build-cpus", default: () => "", defaultHelp: "any",
    help: "Linux CPU list (taskset syntax: 1, 0-1, 0,2-3) that compiles and cargo run on, in a process of their own: keep them off Envoy's CPUs",
  },
  { env: "CP_BUILD_NICE", flag: "build-nice", help: "nice value 0-19 of the compile thread, e.g. 10 to favour a co-located Envoy under CPU pressure", default: () => "0" },
  { env: "CP_AUTO_DISABLE_AFTER", flag: "auto-disable-after", help: "crashes of a filter's Wasm VM (Envoy FAIL_RELOAD reload stats) within the window that make the control plane roll it back or disable it (0: off)", default: () => "5" },
  { env: "CP_AUTO_DISABLE_WINDOW", flag: "auto-disable-window", help: "seconds over which CP_AUTO_DISABLE_AFTER counts failures", default: () => "60" },
  // Security (README "Security").
  { env: "CP_ADMIN_TOKEN", flag: "admin-token", help: "bearer token for /api and /metrics, required when CP_ADMIN_HOST is not loopback (prefer the variable: flags show in ps)", default: () => "", defaultHelp: "none" },
  { env: "CP_XDS_TOKEN", flag: "xds-token", help: "bearer token every xDS client must send (Envoy: grpc_service initial_metadata in its bootstrap), required beyond loopback unless mTLS (prefer the variable: flags show in ps)", default: () => "", defaultHelp: "none" },
  { env: "CP_TLS_CERT", flag: "tls-cert", help: "PEM certificate chain: serve xDS and modules over TLS", default: () => "", defaultHelp: "none: plaintext" },
  { env: "CP_TLS_KEY", flag: "tls-key", help: "PEM private key of CP_TLS_CERT", default: () => "", defaultHelp: "none" },
  { env: "CP_TLS_CLIENT_CA", flag: "tls-client-ca", help: "PEM CA: xDS clients must present a certificate it signed (mTLS)", default: () => "", defaultHelp: "none: no client certificates" },
  { env: "CP_MODULE_TLS_CA_FOR_ENVOY", flag: "module-tls-ca-for-envoy", help: "absolute path, on Envoy's machine, of the CA Envoy trusts for the module server", default: (p) => p.CP_TLS_CLIENT_CA ? path.resolve(p.CP_TLS_CLIENT_CA) : "", defaultHelp: "CP_TLS_CLIENT_CA" },
];

export class ConfigError extends Error {}

export function usage(): string {
  const lines = SETTINGS.map((s) => `  --${s.flag.padEnd(24)} ${s.env.padEnd(27)} ${s.help} (default ${s.defaultHelp ?? s.default({})})`);
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
  const config: Config = {
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
    modulePeers: modulePeers(get),
    filtersDir: path.resolve(get("CP_FILTERS_DIR")),
    stateFile: path.resolve(get("CP_STATE_FILE")),
    logLevel: oneOf(get, "CP_LOG_LEVEL", ["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    maxModuleBytes: byteCount(get, "CP_MAX_MODULE_BYTES"),
    buildNice: intInRange(get, "CP_BUILD_NICE", 0, 19),
    autoDisableAfter: intInRange(get, "CP_AUTO_DISABLE_AFTER", 0, 1_000_000),
    autoDisableWindowS: intInRange(get, "CP_AUTO_DISABLE_WINDOW", 1, 86_400),
    store: storeConfig(get),
    replicaId: replicaId(get),
  };
  if (raw.CP_STATE_DIR !== undefined) config.stateDir = path.resolve(raw.CP_STATE_DIR);
  if (raw.CP_ROUTES_FILE !== undefined) config.routesFile = path.resolve(raw.CP_ROUTES_FILE);
  if (get("CP_BUILD_CPUS") !== "") config.buildCpus = buildCpus(get);
  if (get("CP_BUILD_WORKERS") !== "") config.buildWorkers = intInRange(get, "CP_BUILD_WORKERS", 1, 64);
  const token = adminToken(get, config.adminHost);
  if (token !== undefined) config.adminToken = token;
  const tls = tlsConfig(get);
  if (tls !== undefined) config.tls = tls;
  const xds = xdsToken(get, config.xdsHost, tls?.clientCaFile !== undefined);
  if (xds !== undefined) config.xdsToken = xds;
  return config;
}

function modulePeers(get: (n: string) => string): HostPort[] {
  const v = get("CP_MODULE_PEERS").trim();
  if (v === "") return [];
  const peers = v.split(",").map((one) => hostPort(() => one.trim(), "CP_MODULE_PEERS"));
  const kind = (h: HostPort) => net.isIP(h.host) !== 0;
  const address = hostPort(get, "CP_MODULE_ADDRESS");
  // One cluster type for all endpoints: EDS for IPs, STRICT_DNS for names.
  if (peers.some((p) => kind(p) !== kind(address))) {
    throw new ConfigError(`CP_MODULE_PEERS=${JSON.stringify(v)}: mix IP addresses and names with CP_MODULE_ADDRESS; use one kind for all`);
  }
  return peers;
}

function buildCpus(get: (n: string) => string): string {
  const v = get("CP_BUILD_CPUS");
  try {
    return resolveBuildCpus(v);
  } catch (err) {
    throw new ConfigError(`CP_BUILD_CPUS=${JSON.stringify(v)}: ${(err as Error).message}`);
  }
}

function storeConfig(get: (n: string) => string): StoreConfig {
  const v = get("CP_STORE").trim();
  if (v === "dir") return { kind: "dir" };
  let target: { hosts: string[]; prefix: string };
  try {
    target = parseEtcdUrl(v);
  } catch (err) {
    throw new ConfigError(`CP_STORE=${JSON.stringify(v)}: expected dir or ${(err as Error).message.replace(/^expected /, "")}`);
  }
  return { kind: "etcd", url: v, ...target, leaseTtlS: intInRange(get, "CP_ETCD_LEASE_TTL", 2, 300) };
}

function replicaId(get: (n: string) => string): string {
  const v = get("CP_REPLICA_ID");
  if (v === "") return `${os.hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(v)) throw new ConfigError(`CP_REPLICA_ID=${JSON.stringify(v)}: expected 1-64 of A-Z a-z 0-9 . _ -`);
  return v;
}

/** Where modules and filter records live: CP_STATE_DIR, else the state file's folder. */
export function stateDirOf(config: Pick<Config, "stateDir" | "stateFile">): string {
  return config.stateDir ?? path.dirname(config.stateFile);
}

/** Compiles at once by default: one per core, at most 4 (each worker holds ~250 MB). */
export function defaultBuildWorkers(cores: number): number {
  return Math.max(1, Math.min(cores, 4));
}

/** Loopback: 127.0.0.0/8, ::1 (also IPv4-mapped), or the name localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:(?=\d+\.)/, "");
  if (h === "localhost" || h === "::1") return true;
  return net.isIPv4(h) && h.startsWith("127.");
}

const MIN_TOKEN_LENGTH = 16;

function adminToken(get: (n: string) => string, adminHost: string): string | undefined {
  const v = get("CP_ADMIN_TOKEN");
  if (v === "") {
    // An admin API reachable from other machines changes what every Envoy runs: never open.
    if (!isLoopback(adminHost)) {
      throw new ConfigError(`CP_ADMIN_HOST=${JSON.stringify(adminHost)} is not loopback: set CP_ADMIN_TOKEN (e.g. $(openssl rand -hex 32)) or bind CP_ADMIN_HOST to 127.0.0.1`);
    }
    return undefined;
  }
  // Sent as `Authorization: Bearer <token>`: one header-safe word. The value is never echoed.
  if (!/^[\x21-\x7e]+$/.test(v)) throw new ConfigError("CP_ADMIN_TOKEN: expected printable ASCII without spaces");
  if (v.length < MIN_TOKEN_LENGTH) throw new ConfigError(`CP_ADMIN_TOKEN: expected at least ${MIN_TOKEN_LENGTH} characters (e.g. $(openssl rand -hex 32))`);
  return v;
}

/** RFC 6750 b64token: safe in an HTTP/2 header, a YAML plain scalar and a sed replacement (docker compose). */
const B64TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

function xdsToken(get: (n: string) => string, xdsHost: string, mtls: boolean): string | undefined {
  const v = get("CP_XDS_TOKEN");
  if (v === "") {
    // Whoever reaches the xDS port reads every filter's configuration and feeds the health
    // monitor (stats, NACKs): beyond loopback, only authenticated clients.
    if (!isLoopback(xdsHost) && !mtls) {
      throw new ConfigError(`CP_XDS_HOST=${JSON.stringify(xdsHost)} is not loopback: set CP_XDS_TOKEN (e.g. $(openssl rand -hex 32); Envoy's bootstrap sends it) or CP_TLS_CLIENT_CA (mTLS), or bind CP_XDS_HOST to 127.0.0.1`);
    }
    return undefined;
  }
  if (!B64TOKEN.test(v)) throw new ConfigError("CP_XDS_TOKEN: expected letters, digits and - . _ ~ + / (then = padding), e.g. $(openssl rand -hex 32)");
  if (v.length < MIN_TOKEN_LENGTH) throw new ConfigError(`CP_XDS_TOKEN: expected at least ${MIN_TOKEN_LENGTH} characters (e.g. $(openssl rand -hex 32))`);
  return v;
}

function tlsConfig(get: (n: string) => string): TlsConfig | undefined {
  const cert = get("CP_TLS_CERT");
  const key = get("CP_TLS_KEY");
  const clientCa = get("CP_TLS_CLIENT_CA");
  const moduleCa = get("CP_MODULE_TLS_CA_FOR_ENVOY");
  if (cert === "" && key === "") {
    const stray = clientCa !== "" ? "CP_TLS_CLIENT_CA" : moduleCa !== "" ? "CP_MODULE_TLS_CA_FOR_ENVOY" : undefined;
    if (stray) throw new ConfigError(`${stray} is set but TLS is off: set CP_TLS_CERT and CP_TLS_KEY too`);
    return undefined;
  }
  if (cert === "" || key === "") throw new ConfigError(`${cert === "" ? "CP_TLS_KEY" : "CP_TLS_CERT"} is set without ${cert === "" ? "CP_TLS_CERT" : "CP_TLS_KEY"}: TLS needs both`);
  // Pushed to Envoy as is, so it must not depend on the control plane's working directory.
  if (moduleCa === "") {
    throw new ConfigError("CP_TLS_CERT is set but Envoy would not verify the module server: set CP_MODULE_TLS_CA_FOR_ENVOY (or CP_TLS_CLIENT_CA, its default) to the CA file as Envoy sees it");
  }
  if (!path.isAbsolute(moduleCa)) throw new ConfigError(`CP_MODULE_TLS_CA_FOR_ENVOY=${JSON.stringify(moduleCa)}: expected an absolute path (as Envoy sees it)`);
  const tls: TlsConfig = { certFile: path.resolve(cert), keyFile: path.resolve(key), moduleCaForEnvoy: moduleCa };
  if (clientCa !== "") tls.clientCaFile = path.resolve(clientCa);
  return tls;
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

function intInRange(get: (n: string) => string, name: string, min: number, max: number): number {
  const v = get(name);
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected an integer ${min}-${max}`);
  return n;
}

/** A positive byte count, at most 1 GiB (beyond that Envoy's fetch and V8 are the limit anyway). */
function byteCount(get: (n: string) => string, name: string): number {
  const v = get(name);
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1024 * 1024 * 1024) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected a number of bytes, 1 to 1073741824`);
  return n;
}

function oneOf(get: (n: string) => string, name: string, allowed: string[]): string {
  const v = get(name);
  if (!allowed.includes(v)) throw new ConfigError(`${name}=${JSON.stringify(v)}: expected one of ${allowed.join(", ")}`);
  return v;
}
