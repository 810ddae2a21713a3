// What a per-route configuration costs in Envoy: Wasm VMs (created, active) and memory (Envoy's
// allocator and the process RSS) with 0, 1, 2 and 4 extra configurations of one filter, each on a
// route of its own; and, as the control, what a listener change without a new slot costs (an
// order change). Real control plane, real Envoy (--concurrency 2), loopback only.
//
//   node --import tsx bench/per-route-configs.ts [--drain 2]
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { copyFilters } from "../test/support/controlplane.ts";
import { httpRequest } from "../test/support/http.ts";
import { makeWorkDir } from "../test/support/paths.ts";
import { startStack } from "../test/support/stack.ts";
import { waitFor } from "../test/support/wait.ts";

const { values } = parseArgs({ options: { drain: { type: "string", default: "2" }, concurrency: { type: "string", default: "2" } } });
const ROUTES = ["r1", "r2", "r3", "r4", "r5"];

function routesYaml(port: number): string {
  return `upstreams:\n  echo:\n    endpoints: ["127.0.0.1:${port}"]\nvirtual_hosts:\n  - name: all\n    domains: ["*"]\n    routes:\n` +
    ROUTES.map((r) => `      - name: ${r}\n        prefix: /${r}\n        upstream: echo\n`).join("") +
    "      - name: rest\n        prefix: /\n        upstream: echo\n";
}

async function main(): Promise<void> {
  const workDir = makeWorkDir("per-route-configs");
  const filtersDir = copyFilters(path.join(workDir, "filters"));
  // A second filter, so that an order change really changes the listener (the control step).
  const seed = fs.readFileSync(path.join(filtersDir, "add-header", "index.ts"), "utf8");
  fs.mkdirSync(path.join(filtersDir, "second"));
  const second = seed.replace(/"add-header"\);\s*$/, '"second");\n').replace('"x-wasm-filter"', '"x-second"');
  fs.writeFileSync(path.join(filtersDir, "second", "index.ts"), second);
  fs.writeFileSync(path.join(filtersDir, "second", "filter.json"), JSON.stringify({ order: 20 }));
  const routesFile = path.join(workDir, "routes.yaml");
  fs.writeFileSync(routesFile, routesYaml(1));
  const stack = await startStack({
    workDir, filtersDir, cpEnv: { CP_ROUTES_FILE: routesFile },
    envoy: { concurrency: Number(values.concurrency), extraArgs: ["--drain-time-s", values.drain!] },
  });
  fs.writeFileSync(routesFile, routesYaml(stack.echo.port));
  const admin = stack.cp.adminUrl;
  const put = async (p: string, body: unknown): Promise<void> => {
    const r = await httpRequest(`${admin}${p}`, {
      method: "PUT", body: JSON.stringify(body), headers: { "content-type": "application/json" },
    });
    if (r.status !== 200) throw new Error(`PUT ${p}: ${r.status} ${r.body}`);
  };
  const config = async (route: string): Promise<string | undefined> => {
    const r = await httpRequest(`http://127.0.0.1:${stack.ports.listener}/${route}`);
    return r.status === 200 && r.headers["x-second"] !== undefined ? String(r.headers["x-wasm-config"] ?? "") : undefined;
  };
  const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${stack.envoy.pid}/status`, "utf8"))?.[1] ?? NaN);
  const memory = async (): Promise<number> =>
    Number((JSON.parse((await stack.envoy.admin("/memory")).body) as { allocated: string }).allocated);
  // The old listener drains for --drain-time-s; read once the active-VM gauge has settled.
  const settled = async (): Promise<Record<string, number>> => {
    let last = -1;
    await waitFor(async () => {
      const draining = (await stack.envoy.stat("listener_manager.total_listeners_draining")) ?? 0;
      const active = (await stack.envoy.stat("wasm.envoy.wasm.runtime.v8.active")) ?? -1;
      const stable = draining === 0 && active === last;
      last = active;
      return stable;
    }, { what: "drained and VM count stable", timeoutMs: 60_000, intervalMs: 1000 });
    return {
      created: (await stack.envoy.stat("wasm.envoy.wasm.runtime.v8.created")) ?? NaN,
      active: (await stack.envoy.stat("wasm.envoy.wasm.runtime.v8.active")) ?? NaN,
      listenerModified: (await stack.envoy.stat("listener_manager.listener_modified")) ?? NaN,
      allocatedMiB: +((await memory()) / 2 ** 20).toFixed(2),
      rssMiB: +(rssKiB() / 1024).toFixed(2),
    };
  };
  const rows: { step: string; extra: number; [k: string]: string | number }[] = [];
  try {
    await waitFor(async () => (await config("rest")) === "", { what: "add-header running", timeoutMs: 90_000, details: stack.details });
    rows.push({ step: "baseline", extra: 0, ...(await settled()) });
    const modified = (await stack.envoy.stat("listener_manager.listener_modified")) ?? 0;
    await put("/api/filters/add-header/order", { order: 30 });
    await waitFor(async () => ((await stack.envoy.stat("listener_manager.listener_modified")) ?? 0) > modified,
      { what: "listener modified", timeoutMs: 20_000 });
    rows.push({ step: "listener change, no slot (order)", extra: 0, ...(await settled()) });
    let extra = 0;
    for (const target of [1, 2, 4]) {
      while (extra < target) {
        const route = ROUTES[extra]!;
        await put(`/api/filters/add-header/routes/${route}/configuration`, { configuration: `cfg-${route}` });
        await waitFor(async () => (await config(route)) === `cfg-${route}`,
          { what: `cfg on ${route}`, timeoutMs: 30_000, details: stack.details });
        extra++;
      }
      rows.push({ step: `${extra} extra configuration${extra > 1 ? "s" : ""}`, extra, ...(await settled()) });
    }
    await put("/api/filters/add-header/routes/r1/configuration", { configuration: "cfg-r1-changed" });
    await waitFor(async () => (await config("r1")) === "cfg-r1-changed", { what: "changed cfg on r1", timeoutMs: 30_000 });
    rows.push({ step: "change one slot's configuration (ECDS only)", extra, ...(await settled()) });
  } finally {
    await stack.stop();
  }
  console.log(`Envoy --concurrency ${values.concurrency}, --drain-time-s ${values.drain}; ` +
    "two AssemblyScript filters (add-header, second); the extra configurations are add-header's");
  console.log("| step | extra configs | listener updates | VMs created (total) | VMs active | Envoy allocated MiB | Envoy RSS MiB |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.step} | ${r.extra} | ${r.listenerModified} | ${r.created} | ${r.active} | ${r.allocatedMiB} | ${r.rssMiB} |`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
