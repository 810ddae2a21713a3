// The filters CLI: scaffold + build check of the template, the admin API commands against a
// stand-in server, and exit codes (0 done, 1 failed with the API's reason, 2 usage).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { closeCompiler } from "../../controlplane/compile/compiler.ts";
import { parseManifest, rootIdsFromSource } from "../../controlplane/compile/manifest.ts";
import { checkFilter } from "../../controlplane/cli/check.ts";
import { run } from "../../controlplane/cli/main.ts";
import { className } from "../../controlplane/cli/scaffold.ts";
import { repoPath } from "../support/paths.ts";

interface Captured {
  code: number;
  out: string;
  err: string;
}

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("filters CLI: new + test", { timeout: 180_000 }, () => {
  let filtersDir: string;
  before(() => {
    filtersDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cli-test-")), "filters");
  });
  after(async () => {
    await closeCompiler();
    fs.rmSync(path.dirname(filtersDir), { recursive: true, force: true });
  });

  it("new scaffolds the template (and the shared _lib helper) into CP_FILTERS_DIR", async () => {
    const r = await cli(["new", "rate-limit"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 0, r.err);
    const dir = path.join(filtersDir, "rate-limit");
    assert.deepEqual(fs.readdirSync(dir).sort(), ["filter.json", "filter.test.json", "index.ts"]);
    assert.ok(fs.existsSync(path.join(filtersDir, "_lib", "config.ts")), "the configuration helper the template imports");
    assert.match(r.out, /_lib\/config\.ts/);
    const source = fs.readFileSync(path.join(dir, "index.ts"), "utf8");
    assert.deepEqual(rootIdsFromSource(source), ["rate-limit"], "root id = name");
    assert.match(source, /readPluginConfiguration\(configuration_size\)/);
    assert.match(source, /from "\.\.\/_lib\/config"/);
    assert.doesNotMatch(fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join(""), /__NAME__|__CLASS__/);
    const manifest = parseManifest(fs.readFileSync(path.join(dir, "filter.json"), "utf8"));
    assert.ok(manifest.ok, JSON.stringify(manifest));
    assert.deepEqual(fs.readdirSync(filtersDir).sort(), ["_lib", "rate-limit"], "no staging folder left behind");
  });

  it("the scaffolded filter builds, validates, registers root id = name and passes its own test", async () => {
    const report = await checkFilter(filtersDir, "rate-limit");
    assert.equal(report.rootId, "rate-limit");
    assert.match(report.abiVersion, /^0\.2\.[01]$/, "validateModule accepted it");
    assert.match(report.sha256, /^[0-9a-f]{64}$/);
    assert.ok(report.cases.length >= 2, "the template declares its expectations");
    assert.deepEqual(report.cases.filter((c) => !c.ok), []);

    const r = await cli(["test", "rate-limit"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /root id "rate-limit"/);
    assert.match(r.out, /all \d+ cases passed/);
  });

  it("test fails (exit 1) when the filter does not do what filter.test.json expects", async () => {
    const file = path.join(filtersDir, "rate-limit", "filter.test.json");
    const original = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, original.replace('"x-rate-limit": "on" }, "response"', '"x-rate-limit": "off" }, "response"'));
    try {
      const r = await cli(["test", "rate-limit"], { CP_FILTERS_DIR: filtersDir });
      assert.equal(r.code, 1);
      assert.match(r.out, /FAIL says "on" without configuration\n\s+request header x-rate-limit: expected "off", got "on"/);
      assert.match(r.err, /1 of 2 cases failed/);
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it("test reports a build error with file and line (exit 1)", async () => {
    const r0 = await cli(["new", "broken"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r0.code, 0, r0.err);
    fs.appendFileSync(path.join(filtersDir, "broken", "index.ts"), "\nlet oops: i32 = notDeclared;\n");
    const r = await cli(["test", "broken"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(r.code, 1);
    assert.match(r.err, /notDeclared/);
    assert.match(r.err, /broken\/index\.ts\(\d+,\d+\)/);
  });

  it("new refuses to overwrite (exit 1) and rejects bad names (exit 2)", async () => {
    const index = path.join(filtersDir, "rate-limit", "index.ts");
    fs.appendFileSync(index, "// local edit\n");
    const again = await cli(["new", "rate-limit"], { CP_FILTERS_DIR: filtersDir });
    assert.equal(again.code, 1);
    assert.match(again.err, /already exists: not overwriting/);
    assert.match(fs.readFileSync(index, "utf8"), /\/\/ local edit\n$/, "the existing filter is untouched");
    for (const bad of ["Rate", "_lib", "-x", "a/b", "x".repeat(64)]) {
      const r = await cli(["new", bad], { CP_FILTERS_DIR: filtersDir });
      assert.equal(r.code, 2, `${bad}: ${r.err}`);
      assert.match(r.err, /invalid filter name/);
    }
    assert.equal((await cli(["new"], { CP_FILTERS_DIR: filtersDir })).code, 2);
    assert.equal((await cli(["new", "a", "b"], { CP_FILTERS_DIR: filtersDir })).code, 2);
  });

  it("class names in the template are valid identifiers for every valid filter name", () => {
    assert.equal(className("rate-limit"), "RateLimit");
    assert.equal(className("a_b-c"), "ABC");
    assert.equal(className("9lives"), "Filter9lives");
  });
});

describe("filters CLI: admin API commands", () => {
  const requests: { method: string; url: string; auth?: string }[] = [];
  let server: http.Server;
  let url: string;
  const filters = [
    { name: "add-header", enabled: true, order: 10, sha256: "9f76".padEnd(64, "0"), status: "ok" },
    { name: "wip", enabled: true, order: 20, sha256: null, status: "error", error: "wip: ERROR TS2304: Cannot find name 'x'.\n\n in filters/wip/index.ts(7,32)" },
  ];

  before(async () => {
    server = http.createServer((req, res) => {
      requests.push({ method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization });
      const json = (code: number, body: unknown) => res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
      if (req.headers.authorization !== undefined && req.headers.authorization !== "Bearer sesame-sesame-sesame") return json(401, { error: "invalid bearer token" });
      if (req.method === "GET" && req.url === "/api/filters") return json(200, filters);
      const m = /^\/api\/filters\/([^/]+)\/(enable|disable)$/.exec(req.url ?? "");
      if (req.method === "POST" && m) {
        const f = filters.find((x) => x.name === m[1]);
        return f ? json(200, { ...f, enabled: m[2] === "enable" }) : json(404, { error: `no filter named "${m[1]}"` });
      }
      return json(404, { error: "no route" });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("list prints a table with short sha256 and the error's file:line", async () => {
    const r = await cli(["list"], { CP_ADMIN_URL: url });
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split("\n");
    assert.match(lines[0]!, /^NAME\s+STATUS\s+ENABLED\s+ORDER\s+SHA256\s+ERROR$/);
    assert.match(lines[1]!, /^add-header\s+ok\s+yes\s+10\s+9f7600000000$/);
    assert.match(lines[2]!, /^wip\s+error\s+yes\s+20\s+-\s+filters\/wip\/index\.ts:7:32: ERROR TS2304: Cannot find name 'x'\.$/);
    const json = await cli(["list", "--json"], { CP_ADMIN_URL: url });
    assert.deepEqual(JSON.parse(json.out), filters);
  });

  it("enable and disable POST with the token from CP_ADMIN_TOKEN", async () => {
    requests.length = 0;
    const off = await cli(["disable", "add-header"], { CP_ADMIN_URL: url, CP_ADMIN_TOKEN: "sesame-sesame-sesame" });
    assert.equal(off.code, 0, off.err);
    assert.match(off.out, /^add-header: disabled \(order 10, build ok, 9f7600000000\)$/);
    const on = await cli(["enable", "add-header"], { CP_ADMIN_URL: url, CP_ADMIN_TOKEN: "sesame-sesame-sesame" });
    assert.match(on.out, /^add-header: enabled/);
    assert.deepEqual(requests, [
      { method: "POST", url: "/api/filters/add-header/disable", auth: "Bearer sesame-sesame-sesame" },
      { method: "POST", url: "/api/filters/add-header/enable", auth: "Bearer sesame-sesame-sesame" },
    ]);
  });

  it("API refusals exit 1 with the API's reason", async () => {
    const missing = await cli(["enable", "nope"], { CP_ADMIN_URL: url });
    assert.equal(missing.code, 1);
    assert.equal(missing.err, 'filters: POST /api/filters/nope/enable: 404 no filter named "nope"');
    const badToken = await cli(["list"], { CP_ADMIN_URL: url, CP_ADMIN_TOKEN: "wrong" });
    assert.equal(badToken.code, 1);
    assert.match(badToken.err, /401 invalid bearer token \(CP_ADMIN_TOKEN was rejected\)/);
  });

  it("an unreachable control plane exits 1 and says where it looked", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await cli(["list"], { CP_ADMIN_URL: `http://127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
  });

  it("usage errors exit 2", async () => {
    for (const argv of [[], ["frobnicate"], ["enable"], ["disable", "a", "b"], ["enable", "Not Valid"], ["list", "--yaml"]]) {
      const r = await cli(argv, { CP_ADMIN_URL: url });
      assert.equal(r.code, 2, `${JSON.stringify(argv)}: ${r.err}`);
      assert.match(r.err, /Usage: npm run filters -- <command>/);
    }
    assert.equal((await cli(["list"], { CP_ADMIN_URL: "not a url" })).code, 2);
    assert.equal((await cli(["--help"])).code, 0);
  });

  it("the real entry point (npm run filters) exits with those codes", async () => {
    const entry = repoPath("controlplane", "cli", "main.ts");
    const exec = (args: string[]) => promisify(execFile)(process.execPath, ["--import", "tsx", entry, ...args], { cwd: repoPath(), env: { ...process.env, CP_ADMIN_URL: url } })
      .then(() => 0, (e: { code?: number; stderr?: string }) => ({ code: e.code, stderr: e.stderr }));
    assert.equal(await exec(["list"]), 0);
    assert.deepEqual(await exec(["disable", "nope"]), { code: 1, stderr: 'filters: POST /api/filters/nope/disable: 404 no filter named "nope"\n' });
    const usage = await exec(["bogus"]);
    assert.equal(typeof usage === "object" && usage.code, 2);
    const pkg = JSON.parse(fs.readFileSync(repoPath("package.json"), "utf8")) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.filters, "tsx controlplane/cli/main.ts");
  });
});
