// Replica propagation: an admin action on one replica -> the ACK of an Envoy connected to another.
// Three replicas on a real etcd (one member, loopback), a real Envoy on replica C; 50 toggles
// (disable, enable, ...) of add-header made on replica A; for each, the time from sending the
// request to the Envoy's RDS ACK of the resulting version, as C reports it on its event stream.
// Next to it, the same toggles on one control plane with its state directory (the Envoy on it).
// Not a test: numbers in one run, no thresholds.
//
//   npm run bench:replicas [-- --toggles 50]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { allocatePorts, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../test/support/controlplane.ts";
import { startEchoUpstream } from "../test/support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../test/support/envoy.ts";
import { startEtcd } from "../test/support/etcd.ts";
import { httpRequest } from "../test/support/http.ts";
import { makeWorkDir, repoPath } from "../test/support/paths.ts";
import { openSse, type SseStream } from "../test/support/sse.ts";
import { waitFor } from "../test/support/wait.ts";

const { values } = parseArgs({ options: { toggles: { type: "string", default: "50" } } });
const toggles = Number(values.toggles);
const ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

interface Sample {
  /** Request sent -> admin API answered (the write is durable: etcd, or the state file). */
  writeMs: number;
  /** Request sent -> the Envoy's RDS ACK of the new version, as its replica reports it. */
  ackMs: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summary(samples: Sample[]): { writeP50: number; writeP99: number; ackP50: number; ackP99: number; ackMax: number } {
  const w = samples.map((s) => s.writeMs).sort((a, b) => a - b);
  const a = samples.map((s) => s.ackMs).sort((x, y) => x - y);
  return { writeP50: percentile(w, 50), writeP99: percentile(w, 99), ackP50: percentile(a, 50), ackP99: percentile(a, 99), ackMax: a.at(-1)! };
}

/** Toggles on `writer`, ACK seen on `observer`'s event stream for `node`. */
async function measure(writer: ControlPlaneProcess, observer: ControlPlaneProcess, node: string): Promise<Sample[]> {
  const sse: SseStream = await openSse(`${observer.adminUrl}/api/events?types=xds.acked`);
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < toggles; i++) {
      const action = i % 2 === 0 ? "disable" : "enable";
      const seen = sse.messages.length;
      const t0 = performance.now();
      const res = await httpRequest(`${writer.adminUrl}/api/filters/add-header/${action}`, { method: "POST" });
      const writeMs = performance.now() - t0;
      if (res.status !== 200) throw new Error(`${action}: ${res.status} ${res.body}`);
      const ack = await sse.until(() => sse.messages.slice(seen).find((m) => {
        const e = JSON.parse(m.data) as { node: string; typeUrl: string };
        return e.node === node && e.typeUrl === ROUTE;
      }), `the RDS ACK of toggle ${i}`, 20_000);
      samples.push({ writeMs, ackMs: ack.receivedAt - t0 });
    }
  } finally {
    sse.close();
  }
  return samples;
}

async function main(): Promise<void> {
  const workDir = makeWorkDir("bench-replicas");
  const filtersDir = path.join(workDir, "filters");
  for (const folder of ["_lib", "add-header"]) fs.cpSync(repoPath("filters", folder), path.join(filtersDir, folder), { recursive: true });
  const echo = await startEchoUpstream();
  const etcd = await startEtcd(workDir, 1);
  const cps: ControlPlaneProcess[] = [];
  const envoys: EnvoyProcess[] = [];
  try {
    // --- three replicas on etcd, the Envoy on C, toggles on A.
    const ports: ControlPlanePorts[] = [await allocatePorts(), await allocatePorts(), await allocatePorts()];
    const listener = ports[0]!.listener;
    const peers = ports.slice(1).map((p) => `127.0.0.1:${p.modules}`).join(",");
    for (const [i, id] of ["a", "b", "c"].entries()) {
      cps.push(await startControlPlane({
        ports: { ...ports[i]!, listener }, filtersDir, stateFile: path.join(workDir, `unused-${id}.json`), upstreamPort: echo.port, workDir,
        name: `replica-${id}`, moduleAddress: `127.0.0.1:${ports[0]!.modules}`,
        env: { CP_LOG_LEVEL: "warn", CP_STORE: etcd.storeUrl, CP_REPLICA_ID: id, CP_MODULE_PEERS: peers },
      }));
    }
    const [a, , c] = cps as [ControlPlaneProcess, ControlPlaneProcess, ControlPlaneProcess];
    await waitFor(async () => (await c.filter("add-header"))?.status === "ok", { what: "add-header on C", timeoutMs: 120_000 });
    const onC = await startEnvoy({ bootstrap: { xdsPort: ports[2]!.xds, apiType: "GRPC", nodeId: "envoy-on-c" }, workDir, name: "envoy-c" });
    envoys.push(onC);
    await onC.waitReady(30_000);
    await waitFor(async () => (await c.clients()).some((x) => x.types[ROUTE]?.ackedVersion), { what: "the Envoy on C to ACK RDS", timeoutMs: 30_000 });
    const replicated = await measure(a, c, "envoy-on-c");
    // Same-replica figure on the etcd deployment too (write and ACK both on C).
    const sameReplica = await measure(c, c, "envoy-on-c");
    await onC.stop();
    for (const cp of cps.splice(0)) await cp.kill("SIGTERM");

    // --- one control plane, its state directory, the Envoy on it.
    const singlePorts = await allocatePorts();
    const single = await startControlPlane({
      ports: singlePorts, filtersDir, stateFile: path.join(workDir, "single", "state.json"), upstreamPort: echo.port, workDir,
      name: "single", env: { CP_LOG_LEVEL: "warn" },
    });
    cps.push(single);
    await waitFor(async () => (await single.filter("add-header"))?.status === "ok", { what: "add-header on the single control plane", timeoutMs: 120_000 });
    const onSingle = await startEnvoy({ bootstrap: { xdsPort: singlePorts.xds, apiType: "GRPC", nodeId: "envoy-single" }, workDir, name: "envoy-single" });
    envoys.push(onSingle);
    await onSingle.waitReady(30_000);
    await waitFor(async () => (await single.clients()).some((x) => x.types[ROUTE]?.ackedVersion), { what: "the Envoy to ACK RDS", timeoutMs: 30_000 });
    const alone = await measure(single, single, "envoy-single");

    const rows = [
      { setup: "3 replicas on etcd: toggle on A, Envoy on C", ...summary(replicated) },
      { setup: "3 replicas on etcd: toggle on C, Envoy on C", ...summary(sameReplica) },
      { setup: "1 control plane, state directory", ...summary(alone) },
    ];
    const fmt = (n: number) => n.toFixed(1);
    const lines = [
      `# Replica propagation: ${toggles} toggles each, ${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}`,
      "",
      "| setup | admin answer p50 / p99 (ms) | Envoy ACK p50 / p99 / max (ms) |",
      "|---|---|---|",
      ...rows.map((r) => `| ${r.setup} | ${fmt(r.writeP50)} / ${fmt(r.writeP99)} | ${fmt(r.ackP50)} / ${fmt(r.ackP99)} / ${fmt(r.ackMax)} |`),
      "",
      `Replicated ACK p50 = ${(rows[0]!.ackP50 / rows[2]!.ackP50).toFixed(2)}x the single control plane's (same run).`,
    ];
    const stamp = new Date().toISOString().slice(0, 16).replace(":", "-");
    const out = repoPath("bench", "results", `${stamp}-replicas`);
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, "replicas.md"), lines.join("\n") + "\n");
    fs.writeFileSync(path.join(out, "samples.json"), JSON.stringify({ replicated, sameReplica, alone }, null, 1));
    console.log(lines.join("\n"));
    console.log(`\nwritten to ${path.relative(repoPath(), out)}/`);
  } finally {
    await Promise.all(envoys.map((e) => e.stop()));
    for (const cp of cps) await cp.kill("SIGTERM");
    await echo.close();
    await etcd.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
