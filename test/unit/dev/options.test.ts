// `npm run dev` options (pure parsing) and the readable log lines it prints for pino records.
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { formatPinoLine, pinoFormatter } from "../../../dev/logs.ts";
import { parseDevOptions } from "../../../dev/options.ts";
import { bindError, busyPorts, describeBusy } from "../../../dev/ports.ts";

describe("npm run dev options", () => {
  it("defaults to the documented ports, ./filters and Envoy at warning", () => {
    const parsed = parseDevOptions([], {}, "/repo");
    assert.ok("options" in parsed);
    assert.deepEqual(parsed.options, {
      ports: { listener: 10000, xds: 18000, modules: 18080, admin: 19000, envoyAdmin: 9901, echo: 0 },
      filtersDir: "/repo/filters",
      envoyLogLevel: "warning",
    });
  });

  it("takes flags over the control plane's variables", () => {
    const parsed = parseDevOptions(["--admin-port", "19001", "--xds-port=18001", "--filters-dir", "x/f"],
      { CP_ADMIN_PORT: "1", CP_LISTENER_PORT: "10001", CP_FILTERS_DIR: "/elsewhere" }, "/repo");
    assert.ok("options" in parsed);
    assert.equal(parsed.options.ports.admin, 19001);
    assert.equal(parsed.options.ports.xds, 18001);
    assert.equal(parsed.options.ports.listener, 10001);
    assert.equal(parsed.options.filtersDir, "/repo/x/f");
  });

  it("refuses bad values with one line naming the flag or variable", () => {
    assert.deepEqual(parseDevOptions(["--admin-port", "70000"], {}, "/"),
      { error: '--admin-port: expected a port number 0-65535, got "70000"' });
    assert.deepEqual(parseDevOptions([], { CP_XDS_PORT: "x" }, "/"), { error: 'CP_XDS_PORT: expected a port number 0-65535, got "x"' });
    assert.deepEqual(parseDevOptions(["--listener-port", "0"], {}, "/"),
      { error: "--listener-port: port 0 is only allowed for the echo upstream" });
    assert.deepEqual(parseDevOptions(["--bogus"], {}, "/"), { error: 'unknown argument "--bogus" (see npm run dev -- --help)' });
    assert.deepEqual(parseDevOptions(["--admin-port"], {}, "/"), { error: "--admin-port needs a value" });
    assert.deepEqual(parseDevOptions(["--admin-port", "9901"], {}, "/"),
      { error: "port 9901 is given for both admin API and dashboard and Envoy admin" });
    assert.deepEqual(parseDevOptions(["--help"], {}, "/"), { help: true });
  });

  it("names a port in use, and only that one", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: "127.0.0.1", port: 0 }, resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      assert.equal(await bindError("127.0.0.1", port), "EADDRINUSE");
      const busy = await busyPorts("127.0.0.1", [{ port, what: "admin" }, { port: 0, what: "echo" }]);
      assert.deepEqual(busy, [{ port, what: "admin", code: "EADDRINUSE" }]);
      assert.equal(describeBusy("127.0.0.1", busy),
        `port ${port} (admin) is already in use on 127.0.0.1: stop what uses it or pick other ports (npm run dev -- --help)`);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    assert.equal(await bindError("127.0.0.1", port), null);
  });
});

describe("npm run dev log lines", () => {
  const time = new Date(2026, 0, 2, 3, 4, 5, 6).getTime();

  it("turns a pino record into time, level, message and fields", () => {
    const line = JSON.stringify({ level: 40, time, pid: 1, hostname: "h",
      msg: "filter built", filter: "add-header", bytes: 28523, why: "a b" });
    assert.deepEqual(formatPinoLine(line),
      { text: '03:04:05.006 WARN  filter built filter=add-header bytes=28523 why="a b"', level: 40, extra: [] });
  });

  it("shows an error's message inline and its stack below from level error up", () => {
    const line = JSON.stringify({ level: 50, time,
      msg: "watcher failed", err: { type: "Error", message: "boom", stack: "Error: boom\n    at x (y.ts:1:2)" } });
    assert.deepEqual(formatPinoLine(line),
      { text: "03:04:05.006 ERROR watcher failed err=boom", level: 50, extra: ["    at x (y.ts:1:2)"] });
  });

  it("leaves lines that are not pino records alone", () => {
    assert.deepEqual(formatPinoLine("wasm-xds: CP_XDS_PORT: bad"), { text: "wasm-xds: CP_XDS_PORT: bad", level: 30, extra: [] });
    assert.deepEqual(formatPinoLine("{not json"), { text: "{not json", level: 30, extra: [] });
  });

  it("folds fastify's access log: changes and errors shown on one line, successful reads hidden", () => {
    const format = pinoFormatter();
    const access = (reqId: string, method: string, url: string, status: number): (string | undefined)[] => [
      format(JSON.stringify({ level: 30, time, component: "admin", reqId, msg: "incoming request", req: { method, url } }))?.text,
      format(JSON.stringify({ level: 30, time, component: "admin", reqId,
        msg: "request completed", res: { statusCode: status }, responseTime: 1.234 }))?.text,
    ];
    assert.deepEqual(access("r1", "GET", "/healthz", 200), [undefined, undefined]);
    assert.deepEqual(access("r2", "POST", "/api/filters/add-header/disable", 200),
      [undefined, "03:04:05.006 INFO  admin POST /api/filters/add-header/disable -> 200 (1.2 ms)"]);
    assert.deepEqual(access("r3", "GET", "/api/filters/nope", 404),
      [undefined, "03:04:05.006 WARN  admin GET /api/filters/nope -> 404 (1.2 ms)"]);
  });
});
