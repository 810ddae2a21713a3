import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig, usage, type Config } from "../../controlplane/config.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const ALL_VARIABLES = [
  "CP_MAX_MODULE_BYTES",
  "CP_XDS_PORT",
  "CP_XDS_HOST",
  "CP_MODULE_PORT",
  "CP_MODULE_HOST",
  "CP_ADMIN_PORT",
  "CP_ADMIN_HOST",
  "CP_LISTENER_PORT",
  "CP_LISTENER_ADDRESS",
  "CP_UPSTREAM",
  "CP_ROUTES_FILE",
  "CP_MODULE_ADDRESS",
  "CP_MODULE_PEERS",
  "CP_STORE",
  "CP_REPLICA_ID",
  "CP_ETCD_LEASE_TTL",
  "CP_FILTERS_DIR",
  "CP_STATE_FILE",
  "CP_STATE_DIR",
  "CP_BUILD_WORKERS",
  "CP_LOG_LEVEL",
  "CP_BUILD_CPUS",
  "CP_BUILD_NICE",
  "CP_AUTO_DISABLE_AFTER",
  "CP_AUTO_DISABLE_WINDOW",
  "CP_ADMIN_TOKEN",
  "CP_XDS_TOKEN",
  "CP_TLS_CERT",
  "CP_TLS_KEY",
  "CP_TLS_CLIENT_CA",
  "CP_MODULE_TLS_CA_FOR_ENVOY",
];

const TOKEN = "0123456789abcdef0123";
const XDS_TOKEN = "fedcba9876543210fedcba9876543210";

function config(argv: string[] = [], env: NodeJS.ProcessEnv = {}): Config {
  const c = loadConfig(argv, env);
  assert.notEqual(c, "help");
  return c as Config;
}

/** Asserts loadConfig throws a one-line ConfigError matching `pattern`; returns the message. */
function configError(argv: string[], env: NodeJS.ProcessEnv, pattern: RegExp): string {
  let message = "";
  assert.throws(() => loadConfig(argv, env), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
    message = err.message;
    return true;
  });
  assert.match(message, pattern);
  assert.ok(!message.includes("\n"), `one line: ${JSON.stringify(message)}`);
  return message;
}

describe("loadConfig", () => {
  test("defaults", () => {
    const c = config();
    assert.deepEqual(c, {
      xdsHost: "127.0.0.1",
      xdsPort: 18000,
      moduleHost: "0.0.0.0",
      modulePort: 18080,
      adminHost: "127.0.0.1",
      adminPort: 19000,
      listenerAddress: "0.0.0.0",
      listenerPort: 10000,
      upstream: { host: "echo", port: 8080 },
      moduleAddress: { host: "host.docker.internal", port: 18080 },
      filtersDir: path.resolve("./filters"),
      stateFile: path.resolve("./.state/state.json"),
      logLevel: "info",
      buildNice: 0,
      autoDisableAfter: 5,
      autoDisableWindowS: 60,
      maxModuleBytes: 8 * 1024 * 1024,
      modulePeers: [],
      store: { kind: "dir" },
      replicaId: c.replicaId,
    });
    assert.match(c.replicaId, /^[A-Za-z0-9._-]+-\d+$/, "default replica id: <hostname>-<pid>");
  });

  test("the module address's default port follows CP_MODULE_PORT (env or flag)", () => {
    assert.deepEqual(config([], { CP_MODULE_PORT: "28080" }).moduleAddress, { host: "host.docker.internal", port: 28080 });
    assert.deepEqual(config(["--module-port", "38080"], { CP_MODULE_PORT: "28080" }).moduleAddress, { host: "host.docker.internal", port: 38080 });
    // An explicit address is not overridden by the port.
    assert.deepEqual(config([], { CP_MODULE_PORT: "28080", CP_MODULE_ADDRESS: "10.0.0.1:9999" }).moduleAddress, { host: "10.0.0.1", port: 9999 });
  });

  test("environment variables override the defaults", () => {
    const c = config([], {
      CP_XDS_PORT: "1",
      CP_XDS_HOST: "127.0.0.1",
      CP_MODULE_PORT: "2",
      CP_MODULE_HOST: "::1",
      CP_ADMIN_PORT: "3",
      CP_ADMIN_HOST: "0.0.0.0",
      CP_LISTENER_PORT: "65535",
      CP_LISTENER_ADDRESS: "::",
      CP_UPSTREAM: "[::1]:8081",
      CP_MODULE_ADDRESS: "cp.example.com:4",
      CP_FILTERS_DIR: "/tmp/filters",
      CP_STATE_FILE: "relative/state.json",
      CP_LOG_LEVEL: "debug",
      CP_BUILD_NICE: "7",
      CP_MAX_MODULE_BYTES: "1000",
      CP_AUTO_DISABLE_AFTER: "0",
      CP_AUTO_DISABLE_WINDOW: "10",
      CP_ADMIN_TOKEN: TOKEN,
    });
    assert.deepEqual(c, {
      xdsHost: "127.0.0.1",
      xdsPort: 1,
      moduleHost: "::1",
      modulePort: 2,
      adminHost: "0.0.0.0",
      adminPort: 3,
      listenerAddress: "::",
      listenerPort: 65535,
      upstream: { host: "::1", port: 8081 },
      moduleAddress: { host: "cp.example.com", port: 4 },
      filtersDir: "/tmp/filters",
      stateFile: path.resolve("relative/state.json"),
      logLevel: "debug",
      buildNice: 7,
      maxModuleBytes: 1000,
      autoDisableAfter: 0,
      autoDisableWindowS: 10,
      modulePeers: [],
      store: { kind: "dir" },
      replicaId: c.replicaId,
      adminToken: TOKEN,
    });
  });

  test("an empty environment variable means unset", () => {
    assert.equal(config([], { CP_XDS_PORT: "" }).xdsPort, 18000);
  });

  test("flags win over environment variables", () => {
    const env = { CP_XDS_PORT: "1111", CP_UPSTREAM: "env:1", CP_LOG_LEVEL: "warn", CP_ADMIN_HOST: "10.0.0.1", CP_ADMIN_TOKEN: TOKEN };
    const c = config(["--xds-port", "2222", "--upstream=flag:2", "--log-level", "error"], env);
    assert.equal(c.xdsPort, 2222);
    assert.deepEqual(c.upstream, { host: "flag", port: 2 });
    assert.equal(c.logLevel, "error");
    assert.equal(c.adminHost, "10.0.0.1", "no flag: the environment still applies");
  });

  test("every setting has a flag", () => {
    const c = config([
      "--xds-port", "1", "--xds-host", "h1", "--module-port", "2", "--module-host", "h2",
      "--admin-port", "3", "--admin-host", "h3", "--listener-port", "4", "--listener-address", "10.1.2.3",
      "--upstream", "up:5", "--module-address", "mod:6", "--filters-dir", "/f", "--state-file", "/s.json",
      "--log-level", "trace", "--admin-token", TOKEN, "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
      "--tls-client-ca", "/ca.pem", "--module-tls-ca-for-envoy", "/envoy/ca.pem", "--build-nice", "19",
      "--max-module-bytes", "2048", "--auto-disable-after", "7", "--auto-disable-window", "30",
      "--xds-token", XDS_TOKEN,
    ]);
    assert.deepEqual(c, {
      xdsPort: 1, xdsHost: "h1", modulePort: 2, moduleHost: "h2", adminPort: 3, adminHost: "h3",
      listenerPort: 4, listenerAddress: "10.1.2.3", upstream: { host: "up", port: 5 },
      moduleAddress: { host: "mod", port: 6 }, filtersDir: "/f", stateFile: "/s.json", logLevel: "trace", buildNice: 19, maxModuleBytes: 2048,
      autoDisableAfter: 7, autoDisableWindowS: 30, modulePeers: [], store: { kind: "dir" }, replicaId: c.replicaId,
      adminToken: TOKEN, xdsToken: XDS_TOKEN, tls: { certFile: "/c.pem", keyFile: "/k.pem", clientCaFile: "/ca.pem", moduleCaForEnvoy: "/envoy/ca.pem" },
    });
  });

  test("replicas: CP_STORE, CP_REPLICA_ID, CP_MODULE_PEERS, CP_ETCD_LEASE_TTL", () => {
    const c = config([], { CP_STORE: "etcd://10.0.0.1:2379,10.0.0.2:2379/team", CP_REPLICA_ID: "cp-a", CP_MODULE_ADDRESS: "10.0.0.1:18080", CP_MODULE_PEERS: "10.0.0.2:18080, 10.0.0.3:18080", CP_ETCD_LEASE_TTL: "9" });
    assert.deepEqual(c.store, { kind: "etcd", url: "etcd://10.0.0.1:2379,10.0.0.2:2379/team", hosts: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"], prefix: "team/", leaseTtlS: 9 });
    assert.equal(c.replicaId, "cp-a");
    assert.deepEqual(c.modulePeers, [{ host: "10.0.0.2", port: 18080 }, { host: "10.0.0.3", port: 18080 }]);
    assert.throws(() => config([], { CP_STORE: "redis://x:1" }), /CP_STORE="redis:\/\/x:1": expected dir or etcd:\/\/host:port/);
    assert.throws(() => config([], { CP_REPLICA_ID: "a b" }), /CP_REPLICA_ID/);
    // One cluster type for the module endpoints: all IPs or all names.
    assert.throws(() => config([], { CP_MODULE_ADDRESS: "10.0.0.1:1", CP_MODULE_PEERS: "cp-b:1" }), /CP_MODULE_PEERS.*one kind/);
    assert.throws(() => config([], { CP_MODULE_PEERS: "nope" }), /CP_MODULE_PEERS/);
  });

  test("--help and -h return \"help\", even with other flags", () => {
    assert.equal(loadConfig(["--help"], {}), "help");
    assert.equal(loadConfig(["-h"], {}), "help");
    assert.equal(loadConfig(["--xds-port", "1", "--help"], { CP_XDS_PORT: "abc" }), "help");
  });

  test("bad values throw a one-line ConfigError naming the variable", () => {
    const cases: [NodeJS.ProcessEnv, string][] = [
      [{ CP_XDS_PORT: "abc" }, "CP_XDS_PORT"],
      [{ CP_XDS_PORT: "70000" }, "CP_XDS_PORT"],
      [{ CP_XDS_PORT: "0" }, "CP_XDS_PORT"],
      [{ CP_XDS_PORT: "-1" }, "CP_XDS_PORT"],
      [{ CP_XDS_PORT: "80.5" }, "CP_XDS_PORT"],
      [{ CP_XDS_PORT: " 80" }, "CP_XDS_PORT"],
      [{ CP_MODULE_PORT: "abc" }, "CP_MODULE_PORT"],
      [{ CP_ADMIN_PORT: "65536" }, "CP_ADMIN_PORT"],
      [{ CP_LISTENER_PORT: "1e3" }, "CP_LISTENER_PORT"],
      [{ CP_UPSTREAM: "nocolon" }, "CP_UPSTREAM"],
      [{ CP_UPSTREAM: "host:" }, "CP_UPSTREAM"],
      [{ CP_UPSTREAM: ":80" }, "CP_UPSTREAM"],
      [{ CP_UPSTREAM: "host:99999" }, "CP_UPSTREAM"],
      [{ CP_UPSTREAM: "bad_host!:80" }, "CP_UPSTREAM"],
      [{ CP_MODULE_ADDRESS: "::1:80" }, "CP_MODULE_ADDRESS"],
      [{ CP_LISTENER_ADDRESS: "not-an-ip" }, "CP_LISTENER_ADDRESS"],
      [{ CP_LISTENER_ADDRESS: "localhost" }, "CP_LISTENER_ADDRESS"],
      [{ CP_LISTENER_ADDRESS: "256.0.0.1" }, "CP_LISTENER_ADDRESS"],
      [{ CP_ADMIN_HOST: "under_score" }, "CP_ADMIN_HOST"],
      [{ CP_XDS_HOST: "-leading" }, "CP_XDS_HOST"],
      [{ CP_LOG_LEVEL: "verbose" }, "CP_LOG_LEVEL"],
      [{ CP_BUILD_NICE: "20" }, "CP_BUILD_NICE"],
      [{ CP_BUILD_NICE: "-1" }, "CP_BUILD_NICE"],
      [{ CP_MAX_MODULE_BYTES: "0" }, "CP_MAX_MODULE_BYTES"],
      [{ CP_MAX_MODULE_BYTES: "8MiB" }, "CP_MAX_MODULE_BYTES"],
    ];
    for (const [env, variable] of cases) {
      const value = Object.values(env)[0]!;
      const message = configError([], env, new RegExp(`^${variable}=`));
      assert.ok(message.includes(JSON.stringify(value)), `${message} shows the value`);
    }
  });

  test("a bad flag value names the variable too", () => {
    configError(["--xds-port", "abc"], {}, /^CP_XDS_PORT="abc"/);
  });

  test("unknown flags, missing flag values and positional arguments are ConfigErrors", () => {
    assert.match(configError(["--bogus"], {}, /--bogus/), /--help/);
    configError(["--xds-port"], {}, /--xds-port/);
    configError(["stray"], {}, /stray/);
  });
});

describe("admin token and TLS settings", () => {
  test("a non-loopback admin address without CP_ADMIN_TOKEN refuses to start, naming both variables", () => {
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "admin.example.com"]) {
      const message = configError([], { CP_ADMIN_HOST: host }, /^CP_ADMIN_HOST=/);
      assert.match(message, /CP_ADMIN_TOKEN/);
    }
    configError(["--admin-host", "0.0.0.0"], {}, /CP_ADMIN_TOKEN/);
  });

  test("loopback admin addresses need no token", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"]) {
      assert.equal(config([], { CP_ADMIN_HOST: host }).adminToken, undefined, host);
    }
  });

  test("a token is accepted on any address and kept; a weak or unsendable one is refused", () => {
    assert.equal(config([], { CP_ADMIN_HOST: "0.0.0.0", CP_ADMIN_TOKEN: TOKEN }).adminToken, TOKEN);
    assert.equal(config([], { CP_ADMIN_TOKEN: TOKEN }).adminToken, TOKEN, "on loopback too");
    const short = configError([], { CP_ADMIN_TOKEN: "short" }, /^CP_ADMIN_TOKEN: /);
    assert.ok(!short.includes("short"), "the token is never echoed");
    configError([], { CP_ADMIN_TOKEN: "has a space in it, long enough" }, /^CP_ADMIN_TOKEN: /);
  });

  test("TLS files: both or none; the CA for Envoy defaults to CP_TLS_CLIENT_CA", () => {
    assert.equal(config().tls, undefined);
    assert.deepEqual(config([], { CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "k.pem", CP_TLS_CLIENT_CA: "ca.pem" }).tls, {
      certFile: "/c.pem", keyFile: path.resolve("k.pem"), clientCaFile: path.resolve("ca.pem"), moduleCaForEnvoy: path.resolve("ca.pem"),
    });
    assert.deepEqual(config([], { CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "/k.pem", CP_MODULE_TLS_CA_FOR_ENVOY: "/etc/envoy/ca.pem" }).tls, {
      certFile: "/c.pem", keyFile: "/k.pem", moduleCaForEnvoy: "/etc/envoy/ca.pem",
    });
    configError([], { CP_TLS_CERT: "/c.pem" }, /^CP_TLS_CERT is set without CP_TLS_KEY/);
    configError([], { CP_TLS_KEY: "/k.pem" }, /^CP_TLS_KEY is set without CP_TLS_CERT/);
    configError([], { CP_TLS_CLIENT_CA: "/ca.pem" }, /^CP_TLS_CLIENT_CA is set but TLS is off/);
    configError([], { CP_MODULE_TLS_CA_FOR_ENVOY: "/ca.pem" }, /^CP_MODULE_TLS_CA_FOR_ENVOY is set but TLS is off/);
    // No CA for Envoy: it would fetch modules from an unverified server. Refused, not guessed.
    configError([], { CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "/k.pem" }, /CP_MODULE_TLS_CA_FOR_ENVOY/);
    configError([], { CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "/k.pem", CP_MODULE_TLS_CA_FOR_ENVOY: "rel/ca.pem" }, /^CP_MODULE_TLS_CA_FOR_ENVOY="rel\/ca.pem": expected an absolute path/);
  });
});

describe("xDS authentication settings", () => {
  const MTLS = { CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "/k.pem", CP_TLS_CLIENT_CA: "/ca.pem" };

  test("the xDS port binds loopback by default and needs no token there", () => {
    assert.equal(config().xdsHost, "127.0.0.1");
    for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) {
      assert.equal(config([], { CP_XDS_HOST: host }).xdsToken, undefined, host);
    }
  });

  test("beyond loopback without CP_XDS_TOKEN or mTLS: one ConfigError naming the variables", () => {
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "cp.example.com"]) {
      const message = configError([], { CP_XDS_HOST: host }, /^CP_XDS_HOST=/);
      assert.match(message, /CP_XDS_TOKEN/);
      assert.match(message, /CP_TLS_CLIENT_CA/);
    }
    configError(["--xds-host", "0.0.0.0"], {}, /CP_XDS_TOKEN/);
    // TLS without client certificates encrypts but does not say who the client is.
    configError([], { CP_XDS_HOST: "0.0.0.0", CP_TLS_CERT: "/c.pem", CP_TLS_KEY: "/k.pem", CP_MODULE_TLS_CA_FOR_ENVOY: "/ca.pem" }, /CP_XDS_TOKEN/);
  });

  test("beyond loopback with a token, with mTLS, or with both: accepted", () => {
    assert.equal(config([], { CP_XDS_HOST: "0.0.0.0", CP_XDS_TOKEN: XDS_TOKEN }).xdsToken, XDS_TOKEN);
    const mtls = config([], { CP_XDS_HOST: "0.0.0.0", ...MTLS });
    assert.equal(mtls.xdsToken, undefined);
    assert.equal(mtls.tls?.clientCaFile, "/ca.pem");
    assert.equal(config([], { CP_XDS_HOST: "0.0.0.0", ...MTLS, CP_XDS_TOKEN: XDS_TOKEN }).xdsToken, XDS_TOKEN);
    assert.equal(config([], { CP_XDS_TOKEN: XDS_TOKEN }).xdsToken, XDS_TOKEN, "on loopback too");
  });

  test("a short token or one with characters a header or the compose template cannot carry is refused, never echoed", () => {
    for (const bad of ["short-token", "has a space in it, long enough", "quote\"in-it-0123456789", "pipe|in-it-0123456789", "amp&in-it-0123456789"]) {
      const message = configError([], { CP_XDS_TOKEN: bad }, /^CP_XDS_TOKEN: /);
      assert.ok(!message.includes(bad), `the token is never echoed: ${message}`);
    }
    // Hex, base64 and base64url tokens are fine.
    for (const good of ["0123456789abcdef", "AbC+/dEf0123456789==", "AbC-_dEf0123456789~."]) {
      assert.equal(config([], { CP_XDS_TOKEN: good }).xdsToken, good);
    }
  });
});

describe("usage", () => {
  test("lists every CP_* variable with its flag and default", () => {
    const text = usage();
    for (const variable of ALL_VARIABLES) {
      const flag = "--" + variable.slice(3).toLowerCase().replaceAll("_", "-");
      const line = text.split("\n").find((l) => l.includes(` ${variable} `));
      assert.ok(line, `usage lists ${variable}`);
      assert.ok(line.includes(flag), `${variable}'s line shows ${flag}`);
      assert.match(line, /\(default [^)]+\)$/, `${variable}'s line shows its default`);
    }
    assert.match(text, /CP_XDS_PORT .*\(default 18000\)/);
    assert.match(text, /CP_MODULE_ADDRESS .*\(default host\.docker\.internal:18080\)/);
  });

  test("covers every CP_* variable the code, README and test harness mention", () => {
    const sources = [
      // controlplane/cli/ is a client of the admin API with its own variables (CP_ADMIN_URL).
      ...readdirSync(path.join(REPO, "controlplane"), { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".ts") && !f.startsWith("cli/"))
        .map((f) => path.join(REPO, "controlplane", f)),
      ...readdirSync(path.join(REPO, "test/support")).map((f) => path.join(REPO, "test/support", f)),
      path.join(REPO, "README.md"),
    ];
    const mentioned = new Set<string>();
    const CLIENT_ONLY = new Set(["CP_ADMIN_URL"]);
    for (const file of sources) for (const m of readFileSync(file, "utf8").matchAll(/\bCP_[A-Z_]+\b/g)) if (!CLIENT_ONLY.has(m[0])) mentioned.add(m[0]);
    const listed = new Set([...usage().matchAll(/\bCP_[A-Z_]+\b/g)].map((m) => m[0]));
    assert.ok(mentioned.size >= ALL_VARIABLES.length);
    for (const v of mentioned) assert.ok(listed.has(v), `usage lists ${v}`);
    assert.deepEqual([...listed].sort(), [...ALL_VARIABLES].sort());
  });
});
