// A routes file (CP_ROUTES_FILE) end to end: two upstreams that say who they are, a path route and
// a host's virtual host through a real Envoy; an edit under load (new upstream, removed upstream,
// moved route) with zero failed requests and no listener change; bad edits never pushed, shown
// in the API with their line; a bad file at start-up refuses the start.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allocatePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import type { EnvoyProcess } from "../support/envoy.ts";
import { httpGet, httpRequest } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";
import { CONTROLPLANE_NODE_FLAGS } from "../../controlplane/node-flags.ts";

/** A loopback upstream that answers every request with its own name. */
interface Named {
  port: number;
  close(): Promise<void>;
}

function startNamed(who: string): Promise<Named> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const body = JSON.stringify({ who, path: req.url });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  })));
}

interface RoutesApi {
  file: string | null;
  loadedAt: string;
  error: { message: string; line: number | null } | null;
  upstreams: { name: string; endpoints: string[]; discovery: string }[];
  virtualHosts: { name: string; domains: string[]; routes: { name: string; upstream: string; match: Record<string, unknown> }[] }[];
}

describe("routes file through a real Envoy", { timeout: 240_000 }, () => {
  let workDir: string;
  let routesFile: string;
  let a: Named;
  let b: Named;
  let c: Named;
  let stack: Stack | undefined;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let listener: string;

  const details = (): string => stack?.details() ?? "";
  /** Writes the routes file the way editors do: a temporary file renamed over it. */
  const writeRoutes = (text: string): void => {
    fs.writeFileSync(`${routesFile}.tmp`, text);
    fs.renameSync(`${routesFile}.tmp`, routesFile);
  };
  /** Who answered `p` (with `host` as the Host header), or the status when not 200. */
  const who = async (p: string, host?: string, agent?: http.Agent): Promise<string> => {
    const r = await httpRequest(`${listener}${p}`, { headers: host ? { host } : {}, agent: agent ?? false });
    return r.status === 200 ? (JSON.parse(r.body) as { who: string }).who : `status ${r.status}`;
  };
  const routesApi = async (): Promise<RoutesApi> => JSON.parse((await cp.api("/api/routes")).body) as RoutesApi;
  const rdsVersion = async (): Promise<string> => {
    const snapshot = JSON.parse((await cp.api("/api/snapshot")).body) as Record<string, { short: string; version: string }>;
    return Object.values(snapshot).find((t) => t.short === "RDS")!.version;
  };

  const first = (): string => `# two upstreams; /api to a, the rest to echo; b.example to b
upstreams:
  a: { endpoints: [127.0.0.1:${a.port}] }
  b: { endpoints: ["127.0.0.1:${b.port}"], connect_timeout: 1s }
  echo: { endpoints: [127.0.0.1:${stack!.echo.port}] }
virtual_hosts:
  - name: main
    domains: ["*"]
    routes:
      - { name: api, prefix: /api, upstream: a }
      - { name: rest, prefix: /, upstream: echo }
  - name: b-host
    domains: [b.example]
    routes:
      - name: b-all
        prefix: /
        upstream: b
        timeout: 5s
        retries: { retry_on: connect-failure, num_retries: 2 }
`;
  // The edit: a new upstream c (a new EDS cluster) with its own route, /api moved to b, and echo
  // removed (the rest now goes to a): clusters added and removed, routes moved, in one save.
  const second = (): string => `upstreams:
  a: { endpoints: [127.0.0.1:${a.port}] }
  b: { endpoints: [127.0.0.1:${b.port}] }
  c: { endpoints: [127.0.0.1:${c.port}] }
virtual_hosts:
  - name: main
    domains: ["*"]
    routes:
      - { name: api, prefix: /api, upstream: b }
      - { name: cee, prefix: /c, upstream: c }
      - { name: rest, prefix: /, upstream: a }
  - name: b-host
    domains: [b.example]
    routes:
      - { name: b-all, prefix: /, upstream: b }
`;

  before(async () => {
    workDir = makeWorkDir("routes");
    [a, b, c] = await Promise.all([startNamed("a"), startNamed("b"), startNamed("c")]);
    const filtersDir = path.join(workDir, "filters");
    fs.mkdirSync(filtersDir);
    routesFile = path.join(workDir, "routes.yaml");
    // The echo upstream's port is known only once the stack runs: start with a file without it.
    fs.writeFileSync(routesFile, [
      "upstreams:", `  a: { endpoints: [127.0.0.1:${a.port}] }`,
      "virtual_hosts:", "  - name: main", '    domains: ["*"]', "    routes: [{ name: api, prefix: /, upstream: a }]", "",
    ].join("\n"));
    stack = await startStack({ workDir, filtersDir, cpEnv: { CP_ROUTES_FILE: routesFile } });
    ({ cp, envoy } = stack);
    listener = `http://127.0.0.1:${stack.ports.listener}`;
    writeRoutes(first());
    await waitFor(async () => {
      const r = await httpGet(`${listener}/other`);
      return r.status === 200 && (JSON.parse(r.body) as { who?: string; path?: string }).who === undefined;
    }, { what: "the first routes file to be live (/other to the echo upstream)", timeoutMs: 30_000, details });
  });

  after(async () => {
    await stack?.stop();
    await Promise.all([a?.close(), b?.close(), c?.close()]);
  });

  it("routes by path prefix and by host to the named upstreams", async () => {
    assert.equal(await who("/api/x"), "a");
    assert.equal(await who("/api"), "a");
    assert.match((await httpGet(`${listener}/other`)).body, /"path":"\/other"/, "the rest goes to the echo upstream");
    assert.equal(await who("/api/x", "b.example"), "b", "b.example is its own virtual host");
    assert.equal(await who("/", "B.EXAMPLE"), "b", "hosts match case-insensitively");
    const view = await routesApi();
    assert.equal(view.file, routesFile);
    assert.equal(view.error, null);
    assert.deepEqual(view.upstreams.map((u) => `${u.name}:${u.discovery}`), ["a:eds", "b:eds", "echo:eds"]);
    assert.deepEqual(view.virtualHosts.map((v) => `${v.name}:${v.routes.map((r) => `${r.name}->${r.upstream}`).join(",")}`),
      ["main:api->a,rest->echo", "b-host:b-all->b"]);
    assert.deepEqual(view.virtualHosts[0]!.routes[0]!.match, { prefix: "/api" });
  });

  it("an edit under load (clusters added and removed, routes moved) goes live with zero failed requests", async () => {
    const listenerModified = await envoy.stat("listener_manager.listener_modified");
    const agents = Array.from({ length: 3 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const PATHS = ["/api/x", "/c/y", "/other"];
    // What each path must reach once the edit is live (before: a, echo, echo).
    const after = new Map([["/api/x", "b"], ["/c/y", "c"], ["/other", "a"]]);
    const failures: string[] = [];
    const seenNew = new Map<string, number>(PATHS.map((p) => [p, 0]));
    let total = 0;
    let stop = false;
    const MAX_REQUESTS = 20_000;
    const worker = async (agent: http.Agent, offset: number): Promise<void> => {
      for (let i = offset; !stop && total < MAX_REQUESTS; i++) {
        total++;
        const p = PATHS[i % PATHS.length]!;
        try {
          const r = await httpRequest(`${listener}${p}`, { agent });
          if (r.status !== 200) failures.push(`${p}: ${r.status} ${r.headers["x-envoy-response-flags"] ?? ""} ${r.body.slice(0, 80)}`);
          else if ((JSON.parse(r.body) as { who?: string }).who === after.get(p)) seenNew.set(p, seenNew.get(p)! + 1);
        } catch (err) {
          failures.push(`${p}: ${String(err)}`);
        }
      }
    };
    const load = Promise.all(agents.map((agent, i) => worker(agent, i)));
    try {
      await waitFor(() => total > 150, { what: "load to start", timeoutMs: 10_000 });
      writeRoutes(second());
      // Keep the load on until each path was answered by its new upstream a hundred times.
      await waitFor(() => [...seenNew.values()].every((n) => n >= 100), {
        what: "every path to reach its new upstream under load", timeoutMs: 60_000,
        details: () => `seen: ${JSON.stringify([...seenNew])} failures: ${failures.slice(0, 5).join("; ")}\n${details()}`,
      });
    } finally {
      stop = true;
      await load;
      for (const agent of agents) agent.destroy();
    }
    assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed`);
    assert.ok(total > 450, `load actually ran (${total} requests)`);
    assert.equal(await envoy.stat("listener_manager.listener_modified"), listenerModified, "no listener update (which would drain)");
    assert.equal(await who("/x", "b.example"), "b");
    // The removed upstream's cluster is gone from Envoy once the rollout finished.
    await waitFor(async () => (await envoy.stat("cluster.echo.upstream_cx_total")) === undefined,
      { what: "the echo cluster to be removed", timeoutMs: 20_000, details });
    assert.deepEqual((await routesApi()).upstreams.map((u) => u.name), ["a", "b", "c"]);
  });

  it("a bad edit is never pushed: the last good routes keep serving and the API shows the error and its line", async () => {
    const version = await rdsVersion();
    // A YAML syntax error on line 4.
    writeRoutes(second().replace("  c: { endpoints: [127.0.0.1:", "  c: { endpoints: [[127.0.0.1:"));
    const yamlError = await waitFor(async () => (await routesApi()).error ?? undefined,
      { what: "the YAML error in the API", timeoutMs: 20_000, details });
    assert.match(yamlError.message, /^.*routes\.yaml:\d+: YAML: /);
    assert.equal(yamlError.line, 4, "the line of the broken flow sequence");
    assert.equal(await who("/c/y"), "c", "the last good routes keep serving");

    // Valid YAML naming an upstream that does not exist, on line 10.
    writeRoutes(second().replace("{ name: cee, prefix: /c, upstream: c }", "{ name: cee, prefix: /c, upstream: nope }"));
    const unknown = await waitFor(async () => {
      const e = (await routesApi()).error;
      return e && /nope/.test(e.message) ? e : undefined;
    }, { what: "the unknown-upstream error in the API", timeoutMs: 20_000, details });
    assert.match(unknown.message, /routes\.yaml:10: route "cee": upstream "nope" is not defined \(defined: a, b, c\)/);
    assert.equal(unknown.line, 10);
    assert.match(cp.tail(200), /routes file refused; the last good routes keep serving/, "the refusal is logged");
    assert.equal(await rdsVersion(), version, "nothing was pushed");
    assert.equal(await who("/c/y"), "c");
    const inForce = (await routesApi()).virtualHosts[0]!.routes.map((r) => r.upstream);
    assert.deepEqual(inForce, ["b", "c", "a"], "the API shows the routes in force");

    // Fixing the file recovers: the error goes, the new content goes live.
    writeRoutes(second().replace("{ name: cee, prefix: /c, upstream: c }", "{ name: cee, prefix: /c, upstream: b }"));
    await waitFor(async () => (await who("/c/y")) === "b", { what: "the fixed file to go live", timeoutMs: 20_000, details });
    assert.equal((await routesApi()).error, null);
  });

  it("a bad routes file at start-up refuses the start with the line", async () => {
    const dir = makeWorkDir("routes-bad-start");
    const bad = path.join(dir, "routes.yaml");
    fs.writeFileSync(bad, "virtual_hosts:\n  - name: main\n    domains: []\n    routes: [{ name: r, prefix: /, upstream: a }]\n");
    fs.mkdirSync(path.join(dir, "filters"));
    const ports = await allocatePorts();
    // `npm run cp` as a process: it must exit on its own, with the reason (no last good routes to serve).
    const child = spawn(process.execPath, [...CONTROLPLANE_NODE_FLAGS, repoPath("scripts", "run-controlplane.mjs")], {
      cwd: repoPath(),
      env: {
        ...process.env, CP_ROUTES_FILE: bad, CP_FILTERS_DIR: path.join(dir, "filters"), CP_STATE_FILE: path.join(dir, "state.json"),
        CP_UPSTREAM: "127.0.0.1:1", CP_XDS_PORT: String(ports.xds), CP_MODULE_PORT: String(ports.modules), CP_MODULE_HOST: "127.0.0.1",
        CP_ADMIN_PORT: String(ports.admin), CP_MODULE_ADDRESS: `127.0.0.1:${ports.modules}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.notEqual(code, 0, output);
    assert.match(output, /CP_ROUTES_FILE refused, not starting: .*routes\.yaml:3: virtual host "main": domains is empty/);
  });
});
