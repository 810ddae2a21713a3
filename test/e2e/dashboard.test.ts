// The dashboard in a real browser (Debian's Chromium, driven by playwright-core) against a real
// control plane and a real Envoy: what the page shows and what its switch does to traffic.
// Chromium is required: without it this suite fails (apt-get install -y chromium; .ci/run does).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { run as runFiltersCli } from "../../controlplane/cli/main.ts";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { httpGet, httpRequest } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const UI_TIMEOUT_MS = 30_000;
/** The README's screenshot is rewritten only on request; every run keeps one in its work dir. */
const README_SCREENSHOT = process.env.UPDATE_SCREENSHOTS === "1" ? repoPath("docs", "dashboard.png") : undefined;

/** A filter that does not build: the error names file and line, and quotes markup as source. */
const BROKEN_FILTER = `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext } from "@solo-io/proxy-runtime";

class WipRoot extends RootContext {
  createContext(context_id: u32): Context { return new Context(context_id, this); }
}
const banner: string = "<b>" + bannerText + "</b>";
registerRootContext((context_id: u32): RootContext => new WipRoot(context_id), "wip");
`;

describe("dashboard in Chromium against a real control plane and Envoy", { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let envoy: EnvoyProcess;
  let browser: Browser;
  let page: Page;
  let listenerUrl: string;
  const pageErrors: string[] = [];

  const details = (): string => `--- envoy ${envoy?.describe()}\n${envoy?.tail(20)}\n--- control plane\n${cp?.tail(20)}\n--- page errors\n${pageErrors.join("\n")}`;
  const upstreamSees = async (): Promise<Record<string, string>> =>
    (JSON.parse((await httpGet(`${listenerUrl}/headers`)).body) as { headers: Record<string, string> }).headers;
  const filterRow = (name: string) => page.locator(`#filters tr[data-filter="${name}"]`);

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: the dashboard test needs it. Install it with \`apt-get install -y chromium\` (.ci/run does) or point CHROMIUM_BIN at a Chromium binary.`);
    }
    workDir = makeWorkDir("dashboard");
    filtersDir = copyFilters(path.join(workDir, "filters"));
    const ports = await allocatePorts();
    listenerUrl = `http://127.0.0.1:${ports.listener}`;
    echo = await startEchoUpstream();
    cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
    envoy = await startEnvoy({ bootstrap: { xdsPort: ports.xds }, workDir });
    await envoy.waitReady(30_000);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: UI_TIMEOUT_MS });
    page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => {
      // A 404 on /api/events while that endpoint does not exist is expected (the page polls).
      if (msg.type() === "error" && !/Failed to load resource: .*404/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
    });
    await page.goto(cp.adminUrl);
  });

  after(async () => {
    await browser?.close();
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("lists add-header as ok, enabled, with its order and short sha256", async () => {
    await filterRow("add-header").and(page.locator('[data-status="ok"]')).waitFor();
    const f = await cp.filter("add-header");
    assert.match(f?.sha256 ?? "", /^[0-9a-f]{64}$/);
    const row = filterRow("add-header");
    assert.equal(await row.locator("td").nth(4).innerText(), `${f!.sha256!.slice(0, 12)}…`);
    assert.equal(await row.locator("td").nth(3).innerText(), "10");
    assert.equal(await row.locator('[data-testid="toggle"]').isChecked(), true);
    assert.equal(await page.locator("#api-status").getAttribute("data-state"), "ok");
  });

  it("the filters CLI talks to the same API: list, and a refusal with the API's reason", async () => {
    const f = await cp.filter("add-header");
    assert.match(await filtersCli(cp, "list"), new RegExp(`^add-header\\s+ok\\s+yes\\s+10\\s+${f!.sha256!.slice(0, 12)}$`, "m"));
    const err: string[] = [];
    const code = await runFiltersCli(["enable", "nope"], { CP_ADMIN_URL: cp.adminUrl }, { out: () => undefined, err: (l) => err.push(l) });
    assert.equal(code, 1);
    assert.equal(err.join("\n"), 'filters: POST /api/filters/nope/enable: 404 no filter named "nope"');
  });

  it("lists the Envoy with its node, cluster and every type ACKed", async () => {
    const card = page.locator('.envoy[data-node="envoy-local"][data-cluster="wasm-xds"][data-state="acked"]');
    await card.waitFor();
    const types = await card.locator("tbody tr").evaluateAll((rows) => rows.map((r) => `${r.getAttribute("data-type")}:${r.getAttribute("data-state")}`));
    assert.deepEqual(types, ["CDS:acked", "EDS:acked", "LDS:acked", "RDS:acked", "ECDS:acked"].filter((t) => types.includes(t)));
    for (const t of ["LDS", "RDS", "ECDS"]) assert.ok(types.includes(`${t}:acked`), `${t} is listed as ACKed: ${types.join(", ")}`);
    assert.match(await card.locator("h3").innerText(), /envoy-local\s+cluster wasm-xds/);
    // Which control plane replica it is connected to (CP_REPLICA_ID; by default host-pid).
    const replica = await card.getAttribute("data-replica");
    assert.ok(replica, "the card names the replica");
    assert.match(await card.locator(".small").first().innerText(), new RegExp(`^replica ${replica.replace(/[.]/g, "\\.")} · `));
  });

  it("its switch turns add-header off and on in Envoy", async () => {
    await waitFor(async () => (await upstreamSees())["x-wasm-processed"] === "yes", { what: "add-header to run in Envoy", timeoutMs: 30_000, details });
    const toggle = filterRow("add-header").locator('[data-testid="toggle"]');

    await toggle.uncheck();
    await waitFor(async () => (await upstreamSees())["x-wasm-processed"] === undefined, { what: "Envoy to stop running add-header after the switch", timeoutMs: 20_000, details });
    assert.equal((await cp.filter("add-header"))?.enabled, false, "the API says disabled");
    await filterRow("add-header").and(page.locator('[data-enabled="false"]')).waitFor();

    await toggle.check();
    await waitFor(async () => (await upstreamSees())["x-wasm-processed"] === "yes", { what: "Envoy to run add-header again", timeoutMs: 20_000, details });
    await filterRow("add-header").and(page.locator('[data-enabled="true"]')).waitFor();
    assert.equal(await toggle.isChecked(), true);
  });

  it("shows the control plane's events live in the timeline", async () => {
    if (!(await eventsEndpointExists(cp))) {
      // No SSE endpoint in this build: the page says so and keeps working by polling (shown above).
      await page.locator('#events-status[data-state="polling"]').waitFor();
      return;
    }
    await page.locator('#events-status[data-state="live"]').waitFor();
    // The switch clicks of the previous test, and what Envoy made of them.
    const timeline = page.locator("#timeline li");
    await timeline.filter({ hasText: "add-header: enabled = false" }).and(page.locator('[data-type="state.changed"]')).waitFor();
    await timeline.filter({ hasText: "add-header: enabled = true" }).and(page.locator('[data-type="state.changed"]')).waitFor();
    await timeline.filter({ hasText: "envoy-local: ACK RDS" }).and(page.locator('[data-type="xds.acked"]')).first().waitFor();
    // A change made elsewhere (here the CLI, against this control plane) shows up at once, in
    // the timeline and in the table.
    const disabledEntries = timeline.filter({ hasText: "add-header: enabled = false" });
    assert.equal(await disabledEntries.count(), 1);
    await filtersCli(cp, "disable", "add-header");
    await disabledEntries.nth(1).waitFor();
    await filterRow("add-header").and(page.locator('[data-enabled="false"]')).waitFor();
    assert.equal(await filterRow("add-header").locator('[data-testid="toggle"]').isChecked(), false);
    await filtersCli(cp, "enable", "add-header");
    await filterRow("add-header").and(page.locator('[data-enabled="true"]')).waitFor();
  });

  it("shows a build error with file:line, as text", async () => {
    const dir = path.join(filtersDir, "wip");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: 20 }));
    fs.writeFileSync(path.join(dir, "index.ts"), BROKEN_FILTER);
    const row = filterRow("wip").and(page.locator('[data-status="error"]'));
    await row.waitFor({ timeout: 60_000 });
    assert.match(await row.locator('[data-testid="error-location"]').innerText(), /^filters\/wip\/index\.ts:7:\d+$/);
    const error = row.locator('[data-testid="error"]');
    assert.match(await error.innerText(), /bannerText/);
    assert.ok((await error.innerText()).includes('"<b>" + bannerText + "</b>"'), "the markup in the message is shown as text");
    assert.equal(await error.locator("*").count(), 0, "no element was created from the message");
    // The seed filter is unaffected.
    await filterRow("add-header").and(page.locator('[data-status="ok"]')).waitFor();
    if (await eventsEndpointExists(cp)) await page.locator('#timeline li[data-type="build.failed"]', { hasText: "wip:" }).first().waitFor();
  });

  it("renders without script errors (screenshot: UPDATE_SCREENSHOTS=1 writes docs/dashboard.png)", async () => {
    await page.locator('.envoy[data-state="acked"]').waitFor();
    const shot = await page.screenshot({ path: path.join(workDir, "dashboard.png") });
    assert.ok(shot.byteLength > 10_000, "the page rendered something");
    if (README_SCREENSHOT) fs.writeFileSync(README_SCREENSHOT, shot);
    assert.deepEqual(pageErrors, [], "no uncaught error or CSP violation in the page");
  });
});

describe("dashboard with an admin token", { timeout: 120_000 }, () => {
  const TOKEN = "dashboard-test-token-0123456789";
  let workDir: string;
  let echo: EchoUpstream;
  let cp: ControlPlaneProcess;
  let browser: Browser;
  const pageErrors: string[] = [];

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install it with \`apt-get install -y chromium\` or set CHROMIUM_BIN.`);
    workDir = makeWorkDir("dashboard-token");
    echo = await startEchoUpstream();
    // startControlPlane hands its environment to the child: the token goes in for this start only.
    process.env.CP_ADMIN_TOKEN = TOKEN;
    try {
      cp = await startControlPlane({ ports: await allocatePorts(), filtersDir: copyFilters(path.join(workDir, "filters")), stateFile: path.join(workDir, "state.json"), upstreamPort: echo.port, workDir });
    } finally {
      delete process.env.CP_ADMIN_TOKEN;
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: UI_TIMEOUT_MS });
  });

  after(async () => {
    await browser?.close();
    await cp?.kill("SIGTERM");
    await echo?.close();
  });

  it("asks for the token, then shows filters and live events (read through fetch, with the header)", async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error" && !/Failed to load resource: .*40[14]/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
    });
    await page.goto(cp.adminUrl);
    await page.locator('#api-status[data-state="token"]', { hasText: "token required" }).waitFor();
    await page.locator('#events-status[data-state="polling"]').waitFor();
    assert.equal(await page.locator("#filters tbody tr").count(), 0, "nothing shown without the token");

    await page.locator("#token").fill("not-the-token");
    await page.locator("#token-form button").click();
    await page.locator('#api-status[data-state="token"]', { hasText: "token rejected" }).waitFor();

    await page.locator("#token").fill(TOKEN);
    await page.locator("#token-form button").click();
    await page.locator('#filters tr[data-filter="add-header"][data-status="ok"]').waitFor();
    await page.locator('#events-status[data-state="live"]').waitFor();
    const off = await httpRequest(`${cp.adminUrl}/api/filters/add-header/disable`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(off.status, 200, off.body);
    await page.locator('#timeline li[data-type="state.changed"]', { hasText: "add-header: enabled = false" }).waitFor();
    await page.locator('#filters tr[data-filter="add-header"][data-enabled="false"]').waitFor();

    // The token lives in the tab's sessionStorage: a reload needs no typing.
    await page.reload();
    await page.locator('#filters tr[data-filter="add-header"][data-status="ok"]').waitFor();
    await page.locator('#api-status[data-state="ok"]').waitFor();
    await page.close();
    assert.deepEqual(pageErrors, []);
  });
});

/** Whether this control plane serves GET /api/events (the SSE stream), without reading it. */
async function eventsEndpointExists(cp: ControlPlaneProcess): Promise<boolean> {
  const res = await fetch(`${cp.adminUrl}/api/events`, { headers: { accept: "text/event-stream" } });
  await res.body?.cancel();
  return res.status === 200;
}

/** `npm run filters -- <args>` against this control plane, in-process; asserts success. */
async function filtersCli(cp: ControlPlaneProcess, ...argv: string[]): Promise<string> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runFiltersCli(argv, { CP_ADMIN_URL: cp.adminUrl }, { out: (l) => out.push(l), err: (l) => err.push(l) });
  assert.equal(code, 0, err.join("\n"));
  return out.join("\n");
}
