// Replicas on etcd (CP_STORE=etcd://...): three control planes share operator state, modules and
// filter records through a real etcd; two real Envoys are connected to different replicas (A:
// state of the world, C: delta). What one replica is told, every Envoy gets; what one stores,
// every replica serves; the builder's death hands building over; an etcd outage stops writes
// (503) and nothing else.
//
// Both Envoys take the same listener port (the listener is part of the snapshot, which must be
// byte-identical on every replica): Envoy binds listeners with SO_REUSEPORT, so the two share it
// and the kernel spreads connections. Per-Envoy checks therefore use what each Envoy ACKed on
// its replica (GET /api/clients), and its own admin interface.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { allocatePorts, startControlPlane, type ClientView, type ControlPlanePorts, type ControlPlaneProcess } from "../support/controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "../support/echo.ts";
import { startEnvoy, type EnvoyProcess } from "../support/envoy.ts";
import { startEtcd, type EtcdCluster } from "../support/etcd.ts";
import { httpGet, httpRequest, type HttpResponse } from "../support/http.ts";
import { makeWorkDir, repoPath } from "../support/paths.ts";
import { waitFor } from "../support/wait.ts";

type SnapshotView = Record<string, { short: string; version: string; resources: Record<string, string> }>;
interface Replica {
  id: string;
  ports: ControlPlanePorts;
  cp: ControlPlaneProcess | undefined;
}
interface ReplicaInfo {
  id: string;
  builder: boolean;
  envoys: string[];
}

const snapshotOf = async (cp: ControlPlaneProcess): Promise<SnapshotView> => {
  const r = await cp.api("/api/snapshot");
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as SnapshotView;
};

/** True once `node` on `cp` ACKed, for every type, the version `cp` serves now (and no NACK). */
async function holdsSnapshot(cp: ControlPlaneProcess, node: string): Promise<boolean> {
  const [clients, snap] = await Promise.all([cp.clients(), snapshotOf(cp)]);
  const c: ClientView | undefined = clients.find((x) => x.node.id === node);
  if (!c) return false;
  return Object.entries(snap).every(([typeUrl, t]) => {
    const held = c.types[typeUrl];
    return held !== undefined && held.ackedVersion === t.version && held.lastNack === null;
  });
}

describe("replicas on etcd: three control planes, two Envoys, one shared store", { timeout: 240_000 }, () => {
  let workDir: string;
  let filtersDir: string;
  let etcd: EtcdCluster;
  let echo: EchoUpstream;
  let listenerPort: number;
  const replicas: Replica[] = [];
  const envoys: EnvoyProcess[] = [];
  let envoyA: EnvoyProcess;
  let envoyC: EnvoyProcess;

  const [A, B, C] = [0, 1, 2];
  const cp = (i: number): ControlPlaneProcess => {
    const r = replicas[i]!;
    assert.ok(r.cp, `replica ${r.id} is running`);
    return r.cp;
  };
  const details = (): string => [
    ...replicas.map((r) => `--- replica ${r.id}\n${r.cp?.tail(12) ?? "(stopped)"}`),
    ...envoys.map((e) => `--- envoy ${e.describe()}\n${e.tail(10)}`),
  ].join("\n");
  const get = (): Promise<HttpResponse> => httpGet(`http://127.0.0.1:${listenerPort}/headers`);
  const upstreamHeader = (r: HttpResponse, name: string): string | undefined =>
    (JSON.parse(r.body) as { headers: Record<string, string> }).headers[name];
  const startReplica = async (i: number): Promise<void> => {
    const r = replicas[i]!;
    r.cp = await startControlPlane({
      ports: r.ports, filtersDir, stateFile: path.join(workDir, `unused-${r.id}.json`), upstreamPort: echo.port, workDir, name: `replica-${r.id}`,
      // Every replica names the same module endpoints, all three (its own first would make
      // snapshots differ): Envoy's module cluster reaches whichever replica is up.
      moduleAddress: `127.0.0.1:${replicas[0]!.ports.modules}`,
      env: { CP_LOG_LEVEL: process.env.CP_LOG_LEVEL ?? "warn", CP_STORE: etcd.storeUrl, CP_REPLICA_ID: r.id, CP_ETCD_LEASE_TTL: "3", CP_MODULE_PEERS: replicas.slice(1).map((p) => `127.0.0.1:${p.ports.modules}`).join(",") },
    });
  };
  const directory = async (i: number): Promise<ReplicaInfo[]> => {
    const r = await cp(i).api("/api/replicas");
    assert.equal(r.status, 200, r.body);
    return (JSON.parse(r.body) as { replicas: ReplicaInfo[] }).replicas;
  };

  before(async () => {
    workDir = makeWorkDir("replicas-etcd");
    // add-header only (and the shared _lib): one filter keeps the builds short.
    filtersDir = path.join(workDir, "filters");
    for (const folder of ["_lib", "add-header"]) fs.cpSync(repoPath("filters", folder), path.join(filtersDir, folder), { recursive: true });
    [etcd, echo] = await Promise.all([startEtcd(workDir, 1), startEchoUpstream()]);
    for (const id of ["a", "b", "c"]) replicas.push({ id, ports: await allocatePorts(), cp: undefined });
    listenerPort = replicas[0]!.ports.listener;
    for (const r of replicas) r.ports = { ...r.ports, listener: listenerPort };
    // A first: it is elected builder and compiles; B and C start while it does.
    await startReplica(A);
    await Promise.all([startReplica(B), startReplica(C)]);
  });

  after(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(replicas.map((r) => r.cp?.kill("SIGTERM")));
    await echo?.close();
    await etcd?.stop();
  });

  it("every replica serves the same snapshot, byte for byte, and Envoys on A and C run the filter", async () => {
    for (const i of [A, B, C]) {
      await waitFor(async () => (await cp(i).filter("add-header"))?.status === "ok", { what: `add-header on replica ${replicas[i]!.id}`, timeoutMs: 90_000, details });
    }
    await waitFor(async () => {
      const [a, b, c] = await Promise.all([A, B, C].map((i) => snapshotOf(cp(i))));
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(b) === JSON.stringify(c);
    }, { what: "identical snapshots on A, B and C", timeoutMs: 20_000, details });
    const [a, c] = await Promise.all([snapshotOf(cp(A)), snapshotOf(cp(C))]);
    assert.deepEqual(c, a);
    assert.deepEqual(Object.keys(Object.values(a).find((t) => t.short === "ECDS")!.resources), ["add-header"]);
    const builders = (await directory(C)).filter((r) => r.builder).map((r) => r.id);
    assert.deepEqual(builders, ["a"], "one builder, the first replica");

    envoyA = await startEnvoy({ bootstrap: { xdsPort: replicas[A]!.ports.xds, apiType: "GRPC", nodeId: "envoy-on-a" }, workDir, name: "envoy-a" });
    envoyC = await startEnvoy({ bootstrap: { xdsPort: replicas[C]!.ports.xds, apiType: "DELTA_GRPC", nodeId: "envoy-on-c" }, workDir, name: "envoy-c", componentLogLevel: "wasm:debug,upstream:info" });
    envoys.push(envoyA, envoyC);
    await Promise.all([envoyA.waitReady(30_000), envoyC.waitReady(30_000)]);
    await waitFor(async () => (await holdsSnapshot(cp(A), "envoy-on-a")) && (await holdsSnapshot(cp(C), "envoy-on-c")),
      { what: "each Envoy to ACK its replica's snapshot", timeoutMs: 30_000, details });
    const r = await get();
    assert.equal(r.status, 200);
    assert.equal(upstreamHeader(r, "x-wasm-processed"), "yes");
    // /api/clients says which replica each Envoy is on; /api/replicas on any replica lists both.
    assert.equal(((await cp(C).clients())[0] as ClientView & { replica?: string }).replica, "c");
    await waitFor(async () => {
      const dir = await directory(B);
      return dir.find((x) => x.id === "a")?.envoys.includes("envoy-on-a") === true && dir.find((x) => x.id === "c")?.envoys.includes("envoy-on-c") === true;
    }, { what: "the replica directory (read on B) to list each Envoy at its replica", timeoutMs: 10_000, details });
  });

  it("a disable on A reaches the Envoy on C too; so does the enable", async () => {
    const before = (await snapshotOf(cp(C)))["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"]!.version;
    const res = await cp(A).api("/api/filters/add-header/disable", "POST");
    assert.equal(res.status, 200, res.body);
    await waitFor(async () => (await cp(C).filter("add-header"))?.enabled === false, { what: "C to see the disable", timeoutMs: 10_000, details });
    assert.notEqual((await snapshotOf(cp(C)))["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"]!.version, before);
    await waitFor(async () => (await holdsSnapshot(cp(C), "envoy-on-c")) && (await holdsSnapshot(cp(A), "envoy-on-a")),
      { what: "both Envoys to ACK the disabled route", timeoutMs: 20_000, details });
    assert.deepEqual(await snapshotOf(cp(C)), await snapshotOf(cp(A)));
    for (let i = 0; i < 10; i++) assert.equal(upstreamHeader(await get(), "x-wasm-processed"), undefined, "the filter is off on both Envoys");

    assert.equal((await cp(B).api("/api/filters/add-header/enable", "POST")).status, 200);
    await waitFor(async () => (await cp(A).filter("add-header"))?.enabled === true && (await holdsSnapshot(cp(A), "envoy-on-a")) && (await holdsSnapshot(cp(C), "envoy-on-c")),
      { what: "both Envoys to ACK the enable made on B", timeoutMs: 20_000, details });
  });

  it("conflicting writes on two replicas at once: both land, and every replica agrees", async () => {
    const writes = await Promise.all([
      httpRequest(`${cp(A).adminUrl}/api/filters/add-header/order`, { method: "PUT", body: JSON.stringify({ order: 7 }), headers: { "content-type": "application/json" } }),
      httpRequest(`${cp(C).adminUrl}/api/filters/add-header/configuration`, { method: "PUT", body: JSON.stringify({ configuration: "from-c" }), headers: { "content-type": "application/json" } }),
    ]);
    for (const w of writes) assert.equal(w.status, 200, w.body);
    await waitFor(async () => {
      const views = await Promise.all([A, B, C].map((i) => cp(i).filter("add-header")));
      return views.every((v) => v?.order === 7 && v.configuration === "from-c");
    }, { what: "order (A) and configuration (C) both applied on every replica", timeoutMs: 10_000, details });
    await waitFor(async () => (await holdsSnapshot(cp(A), "envoy-on-a")) && (await holdsSnapshot(cp(C), "envoy-on-c")),
      { what: "both Envoys to ACK", timeoutMs: 20_000, details });
    assert.equal((await get()).headers["x-wasm-config"], "from-c");
  });

  it("an upload on B is served by C's module server, and survives killing B", async () => {
    const seed = (await cp(B).filter("add-header"))!.sha256!;
    const wasm = Buffer.from(await (await fetch(`http://127.0.0.1:${replicas[B]!.ports.modules}/modules/${seed}.wasm`)).arrayBuffer());
    // Another module than add-header's: a custom section appended (id 0, size 9, name
    // "replica", one byte of payload) keeps it valid.
    const custom = Buffer.concat([wasm, Buffer.from([0, 9, 7]), Buffer.from("replica"), Buffer.from("b")]);
    const res = await httpRequest(`${cp(B).adminUrl}/api/filters/uploaded/module?rootId=add-header`, {
      method: "PUT", body: custom, headers: { "content-type": "application/wasm" }, timeoutMs: 60_000,
    });
    assert.equal(res.status, 200, res.body);
    const sha = (JSON.parse(res.body) as { sha256: string }).sha256;
    assert.notEqual(sha, seed);
    const fromC = await fetch(`http://127.0.0.1:${replicas[C]!.ports.modules}/modules/${sha}.wasm`);
    assert.equal(fromC.status, 200, "C's module server serves a module uploaded on B");
    assert.ok(Buffer.from(await fromC.arrayBuffer()).equals(custom));
    await waitFor(async () => (await holdsSnapshot(cp(C), "envoy-on-c")) && (await holdsSnapshot(cp(A), "envoy-on-a"))
      && Object.keys((await snapshotOf(cp(C)))["type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"]!.resources).includes("uploaded"),
    { what: "both Envoys to ACK the uploaded filter", timeoutMs: 30_000, details });

    await replicas[B]!.cp!.kill("SIGKILL");
    replicas[B]!.cp = undefined;
    for (const i of [A, C]) assert.equal((await cp(i).filter("uploaded"))?.sha256, sha, `replica ${replicas[i]!.id} still lists the upload`);
    const again = await fetch(`http://127.0.0.1:${replicas[C]!.ports.modules}/modules/${sha}.wasm`);
    assert.equal(again.status, 200, "and still serves it with B gone");
    await waitFor(async () => (await get()).headers["x-wasm-filter"]?.includes("add-header, add-header") === true,
      { what: "requests through the Envoys to run both filters", timeoutMs: 10_000, details });
    // A new replica (B again, empty memory) loads the upload from etcd.
    await startReplica(B);
    assert.equal((await cp(B).filter("uploaded"))?.sha256, sha, "a restarted replica has the upload");
  });

  it("SIGKILL of the builder, then an edit: another replica is elected and builds it", async () => {
    assert.ok((await directory(C)).find((r) => r.id === "a")?.builder, "A builds");
    await replicas[A]!.cp!.kill("SIGKILL");
    replicas[A]!.cp = undefined;
    const old = (await cp(C).filter("add-header"))!.sha256;
    const file = path.join(filtersDir, "add-header", "index.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"x-wasm-processed", "yes"', '"x-wasm-processed", "edited"'));
    await waitFor(async () => {
      const f = await cp(C).filter("add-header");
      return f?.status === "ok" && f.sha256 !== old;
    }, { what: "the edit to be built by a surviving replica", timeoutMs: 90_000, details });
    const builders = (await directory(C)).filter((r) => r.builder).map((r) => r.id);
    assert.equal(builders.length, 1, `one builder: ${builders.join(",")}`);
    assert.notEqual(builders[0], "a");
    await waitFor(async () => (await holdsSnapshot(cp(C), "envoy-on-c")), { what: "the Envoy on C to ACK the edit", timeoutMs: 30_000, details });
    // envoy-on-a lost its control plane: it keeps its (older) config; envoy-on-c runs the edit.
    await waitFor(async () => {
      const dump = JSON.stringify(await envoyC.configDump("ecds_filters"));
      return dump.includes((await cp(C).filter("add-header"))!.sha256!);
    }, { what: "the Envoy on C to hold the edited module", timeoutMs: 20_000, details });
  });

  it("etcd down: replicas keep serving (a new Envoy too), admin writes answer 503; etcd back: writes resume", async () => {
    await etcd.members[0]!.kill("SIGKILL");
    const res = await httpRequest(`${cp(C).adminUrl}/api/filters/add-header/disable`, { method: "POST", timeoutMs: 30_000 });
    assert.equal(res.status, 503, res.body);
    assert.match(res.body, /etcd/);
    assert.equal((await cp(C).filter("add-header"))?.enabled, true, "nothing changed");
    // Serving goes on: requests through the Envoys, and an Envoy connecting now gets everything.
    for (let i = 0; i < 5; i++) assert.equal((await get()).status, 200);
    const late = await startEnvoy({ bootstrap: { xdsPort: replicas[C]!.ports.xds, apiType: "GRPC", nodeId: "envoy-late" }, workDir, name: "envoy-late" });
    envoys.push(late);
    await late.waitReady(30_000);
    await waitFor(async () => holdsSnapshot(cp(C), "envoy-late"), { what: "a new Envoy to get the full config with etcd down", timeoutMs: 30_000, details });
    assert.equal((await cp(C).api("/api/replicas")).status, 503, "the directory lives in etcd: 503 while it is down");
    // An edit while etcd is down: built, but its module cannot be stored, so nothing changes yet.
    const before = (await cp(C).filter("add-header"))!.sha256;
    const file = path.join(filtersDir, "add-header", "index.ts");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"x-wasm-processed", "edited"', '"x-wasm-processed", "while-etcd-was-down"'));

    await etcd.members[0]!.start();
    await waitFor(async () => (await httpRequest(`${cp(C).adminUrl}/api/filters/add-header/disable`, { method: "POST", timeoutMs: 10_000 })).status === 200,
      { what: "an admin write to succeed once etcd is back", timeoutMs: 60_000, details });
    await waitFor(async () => (await cp(B).filter("add-header"))?.enabled === false && (await holdsSnapshot(cp(C), "envoy-on-c")) && (await holdsSnapshot(cp(C), "envoy-late")),
      { what: "the write to reach the other replica and the Envoys", timeoutMs: 30_000, details });
    // Nothing lost: the edit made during the outage is stored and served once etcd is back.
    await waitFor(async () => {
      const f = await cp(C).filter("add-header");
      return f?.status === "ok" && f.sha256 !== before && (await holdsSnapshot(cp(C), "envoy-on-c"));
    }, { what: "the edit made while etcd was down to be stored and ACKed", timeoutMs: 60_000, details });
  });
});
