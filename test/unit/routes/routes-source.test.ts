// RoutesSource: last good on a bad edit, make-before-break rollout steps, and the file watch
// (real files, real chokidar; a fake `settle`, since there is no Envoy here).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import pino from "pino";
import type { RouteTable } from "../../../controlplane/routes/route-table.ts";
import { RoutesSource, type RolloutStep } from "../../../controlplane/routes/routes-source.ts";
import { RoutesFileError } from "../../../controlplane/routes/routes-file.ts";
import { waitFor } from "../../support/wait.ts";

const log = pino({ level: "silent" });
const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tmpFile(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "routes-source-"));
  dirs.push(dir);
  const file = path.join(dir, "routes.yaml");
  fs.writeFileSync(file, text);
  return file;
}

/** A file with the given upstreams (ports 1..n) and one route per (path, upstream). */
function routesYaml(upstreams: string[], routes: [string, string][]): string {
  return [
    "upstreams:",
    ...upstreams.map((u, i) => `  ${u}: { endpoints: [127.0.0.1:${i + 1}] }`),
    "virtual_hosts:",
    '  - name: main\n    domains: ["*"]\n    routes:',
    ...routes.map(([p, u], i) => `      - { name: r${i}, prefix: ${p}, upstream: ${u} }`),
    "",
  ].join("\n");
}

/** "upstream names | prefix->upstream,...": a table in one line. */
function summary(t: RouteTable): string {
  const routes = t.virtualHosts[0]!.routes.map((r) => `${r.match.prefix}->${r.upstream}`).join(",");
  return `${t.upstreams.map((u) => u.name).sort().join(",")} | ${routes}`;
}

describe("RoutesSource", () => {
  test("a bad file at open is refused with its line", async () => {
    const file = tmpFile("virtual_hosts:\n  - name: m\n    domains: ['*']\n    routes: [{ name: r, prefix: /, upstream: gone }]\n");
    await assert.rejects(RoutesSource.open(file, { log }),
      (err: unknown) => err instanceof RoutesFileError && err.line === 4 && /upstream "gone"/.test(err.message));
    await assert.rejects(RoutesSource.open(path.join(path.dirname(file), "missing.yaml"), { log }), /cannot read the routes file: ENOENT/);
  });

  test("an edit adding and removing upstreams moves in three steps, each after the previous settled", async () => {
    const file = tmpFile(routesYaml(["a", "old"], [["/x", "old"], ["/", "a"]]));
    const seen: string[] = [];
    const steps: RolloutStep["kind"][] = [];
    let source: RoutesSource | undefined = undefined;
    source = await RoutesSource.open(file, {
      log,
      settle: async (step) => {
        steps.push(step.kind);
        if (step.kind === "clusters") assert.deepEqual(step.added.map((u) => u.name), ["new"]);
        return true;
      },
    });
    const s = source;
    s.onChange(() => seen.push(summary(s.current())));
    fs.writeFileSync(file, routesYaml(["a", "new"], [["/x", "new"], ["/", "a"]]));
    await s.reload();
    assert.deepEqual(seen, [
      "a,new,old | /x->old,/->a", // 1: the new cluster next to the old routes
      "a,new,old | /x->new,/->a", // 2: the new routes, the old cluster kept
      "a,new | /x->new,/->a", //     3: the old cluster removed
    ]);
    assert.deepEqual(steps, ["clusters", "routes"]);
    assert.equal(summary(s.view().table), "a,new | /x->new,/->a");
    // Moving a route between existing upstreams is one step.
    seen.length = 0;
    fs.writeFileSync(file, routesYaml(["a", "new"], [["/x", "a"], ["/", "new"]]));
    await s.reload();
    assert.deepEqual(seen, ["a,new | /x->a,/->new"]);
    // The same content again (a touch, an identical save): nothing.
    seen.length = 0;
    await s.reload();
    assert.deepEqual(seen, []);
  });

  test("a bad edit keeps the last good routes and records the error with its line; a fix clears it", async () => {
    const file = tmpFile(routesYaml(["a"], [["/", "a"]]));
    const s = await RoutesSource.open(file, { log });
    let changes = 0;
    s.onChange(() => changes++);
    const good = s.current();
    fs.writeFileSync(file, routesYaml(["a"], [["/", "b"]]));
    await s.reload();
    assert.equal(changes, 0);
    assert.equal(s.current(), good);
    assert.equal(s.view().error?.line, 7);
    assert.match(s.view().error?.message ?? "", /routes\.yaml:7: route "r0": upstream "b" is not defined/);
    fs.rmSync(file);
    await s.reload();
    assert.match(s.view().error?.message ?? "", /cannot read the routes file: ENOENT/);
    assert.equal(s.view().error?.line, null);
    fs.writeFileSync(file, routesYaml(["a", "b"], [["/", "b"]]));
    await s.reload();
    assert.equal(s.view().error, null);
    assert.equal(summary(s.current()), "a,b | /->b");
  });

  test("watching: an editor's save (write a temp file, rename it over) goes live", async () => {
    const file = tmpFile(routesYaml(["a"], [["/", "a"]]));
    const s = await RoutesSource.open(file, { log, debounceMs: 60 });
    try {
      await s.watch();
      fs.writeFileSync(`${file}.tmp`, routesYaml(["a", "b"], [["/b", "b"], ["/", "a"]]));
      fs.renameSync(`${file}.tmp`, file);
      await waitFor(() => summary(s.current()) === "a,b | /b->b,/->a", { what: "the renamed-over file to be loaded", timeoutMs: 10_000 });
      fs.writeFileSync(file, "upstreams: [\n");
      const error = await waitFor(() => s.view().error ?? undefined, { what: "the broken save to be reported", timeoutMs: 10_000 });
      assert.match(error.message, /routes\.yaml:\d+: YAML: /);
      assert.equal(summary(s.current()), "a,b | /b->b,/->a");
    } finally {
      await s.close();
    }
  });
});
