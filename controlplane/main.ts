// Entry for `npm run cp`: parse config, wire the parts in data-flow order, handle signals.
//   filters dir -> build -> registry -> (+ operator state) -> snapshot cache -> xDS streams
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { buildFilter } from "./compile/builder.ts";
import type { Manifest } from "./compile/manifest.ts";
import { moduleCapabilities } from "./compile/capabilities.ts";
import { validateModule } from "./compile/validate.ts";
import { closeCompiler, configureCompiler } from "./compile/compiler.ts";
import { setBuildPlacement } from "./compile/placement.ts";
import { preflightGate } from "./compile/preflight-gate.ts";
import { closePreflight, warmPreflight } from "./compile/preflight.ts";
import { BuildScheduler } from "./compile/scheduler.ts";
import { listFilters, watchFilters, type FilterWatcher } from "./compile/watcher.ts";
import { ConfigError, defaultBuildWorkers, loadConfig, stateDirOf, usage, type Config } from "./config.ts";
import { createAdminApi } from "./http/admin-api.ts";
import { createModuleServer } from "./http/module-server.ts";
import { EventBus } from "./events/bus.ts";
import { addMetricsService } from "./health/metrics-service.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { FetchTracker } from "./registry/fetch-tracker.ts";
import { FilterRegistry, type FilterDefaults } from "./registry/filter-registry.ts";
import { envoysSettled } from "./routes/envoy-settled.ts";
import { defaultRouteTable } from "./routes/route-table.ts";
import { fixedRoutesView, RoutesSource } from "./routes/routes-source.ts";
import { normalizeTargets, OperatorState } from "./state/operator-state.ts";
import { isReadOnlyError, probeWritable } from "./store/durable-file.ts";
import { DirFilterRecordStore } from "./store/filter-records.ts";
import { DirModuleStore } from "./store/module-store.ts";
import { createXdsServer, listenXds } from "./xds/xds-server.ts";
import { XdsAuth } from "./xds/auth.ts";
import { SnapshotCache } from "./xds/cache.ts";
import { ClientRegistry } from "./xds/client-status.ts";
import { SnapshotPublisher } from "./xds/publisher.ts";
import { shortName } from "./xds/type-urls.ts";
import { loadTls, type TlsMaterial } from "./tls.ts";

function readConfig(): { config: Config; tls: TlsMaterial | undefined } {
  try {
    const config = loadConfig(process.argv.slice(2), process.env);
    if (config === "help") {
      console.log(usage());
      process.exit(0);
    }
    // Certificate files are read and checked now: a bad one is a ConfigError line too.
    return { config, tls: loadTls(config.tls, config.moduleAddress.host) };
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`wasm-xds: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

/** Shared store: an unreferenced module is collected this long after it was last stored. */
const SHARED_COLLECT_GRACE_MS = 10 * 60_000;

function defaultsOf(manifest: Manifest): FilterDefaults {
  const d: FilterDefaults = {};
  if (manifest.order !== undefined) d.order = manifest.order;
  if (manifest.enabled !== undefined) d.enabled = manifest.enabled;
  if (manifest.configuration !== undefined) d.configuration = manifest.configuration;
  if (manifest.failPolicy !== undefined) d.failPolicy = manifest.failPolicy;
  if (manifest.targets !== undefined) d.targets = normalizeTargets(manifest.targets);
  return d;
}

async function main(): Promise<void> {
  const { config, tls } = readConfig();
  const log = pino({ level: config.logLevel, base: { pid: process.pid } });
  const cores = os.availableParallelism();
  const buildWorkers = config.buildWorkers ?? defaultBuildWorkers(cores);
  configureCompiler({ workers: buildWorkers, nice: config.buildNice, cores });
  // CP_BUILD_CPUS: compiles (a process each) and cargo run on those CPUs only (placement.ts).
  setBuildPlacement({ cpus: config.buildCpus });

  const stateDir = stateDirOf(config);
  // CP_STORE=etcd://...: operator state, modules and filter records shared by replicas
  // (replicas/shared-store.ts, loaded only then); otherwise the state directory.
  const replicaAddresses = {
    id: config.replicaId, admin: `${config.adminHost}:${config.adminPort}`, xds: `${config.xdsHost}:${config.xdsPort}`,
    modules: `${config.moduleAddress.host}:${config.moduleAddress.port}`,
  };
  const shared = config.store.kind === "etcd"
    ? await (await import("./replicas/shared-store.ts"))
      .openSharedStore(config.store, replicaAddresses, config.store.leaseTtlS, log.child({ component: "store" }))
    : undefined;
  if (!shared) {
    // A read-only state directory would lose every operator action and every build: refuse it.
    // Any other write failure (a full disk) is warned about: stored modules still serve.
    for (const dir of new Set([stateDir, path.dirname(config.stateFile)])) {
      const unwritable = await probeWritable(dir);
      if (unwritable && isReadOnlyError(unwritable)) throw new Error(`${unwritable.message} (CP_STATE_DIR / CP_STATE_FILE must be writable)`);
      if (unwritable) {
        log.warn({ dir, error: unwritable.message }, "state directory cannot be written: operator actions, uploads and builds will fail until it can");
      }
    }
  }
  const state = new OperatorState(shared ? shared.state : config.stateFile);
  await state.load();
  const localModules = shared ? undefined : new DirModuleStore(path.join(stateDir, "modules"));
  await localModules?.open();
  const registry = new FilterRegistry(shared
    ? { modules: shared.modules, records: shared.records }
    : { modules: localModules!, records: new DirFilterRecordStore(path.join(stateDir, "records")) });
  // A rollback pin keeps its module beyond the retained history.
  registry.setPinned((name) => state.choice(name).pinnedSha256);
  const storeName = config.store.kind === "etcd" ? config.store.url : stateDir;
  for (const problem of await registry.restore()) log.warn({ store: storeName, problem }, "store: not restored");
  // Other replicas' changes, from the revision loading started at.
  // After an etcd outage the builder builds every filter again: an edit whose module could not be
  // stored then is stored now (unchanged ones are build-cache hits).
  let rebuildAll = (): void => undefined;
  const following = shared ? await shared.follow(state, registry, log.child({ component: "store" }), () => rebuildAll()) : undefined;
  const fetches = new FetchTracker();
  const cache = new SnapshotCache();
  const events = new EventBus();
  const clients = new ClientRegistry(events);
  // One log line per ACK (pushes, builds and NACKs log where they happen).
  events.subscribe((e) => {
    if (e.type === "xds.acked") log.info({ component: "xds", node: e.node, stream: e.stream, type: shortName(e.typeUrl), version: e.version }, "Envoy ACKed");
  });
  // CP_ROUTES_FILE: a bad file at start-up refuses the start (there are no last good routes to serve).
  const routes = config.routesFile === undefined ? undefined : await RoutesSource.open(config.routesFile, {
    log: log.child({ component: "routes" }), settle: envoysSettled(clients, cache),
  }).catch((err: unknown) => {
    throw new Error(`CP_ROUTES_FILE refused, not starting: ${(err as Error).message}`);
  });
  await routes?.watch();
  const publisher = new SnapshotPublisher(
    {
      listener: { address: config.listenerAddress, port: config.listenerPort }, upstream: config.upstream, moduleServer: config.moduleAddress,
      ...(config.modulePeers.length > 0 ? { modulePeers: config.modulePeers } : {}),
      // An HTTPS module server: Envoy's module cluster speaks TLS and checks the certificate.
      ...(config.tls ? { moduleTls: { caFile: config.tls.moduleCaForEnvoy, sni: config.moduleAddress.host } } : {}),
      // Per-type config sources name the token too (Envoys on the per-type services open RDS/ECDS/EDS streams).
      ...(config.xdsToken !== undefined ? { xdsToken: config.xdsToken } : {}),
    },
    registry, state, cache,
    (changed) => {
      log.info({ changed: changed.map(shortName), versions: Object.fromEntries(changed.map((t) => [shortName(t), cache.get()?.types.get(t)?.version])) }, "snapshot published");
      events.emit({ type: "snapshot.published", changed });
    },
    routes,
  );

  // Filters present on disk; a build that finishes after its folder was deleted is dropped.
  const present = new Set<string>();
  // The size cap applies before a module is ever registered (and so served or announced).
  const validate = (bytes: Uint8Array) => validateModule(bytes, { maxBytes: config.maxModuleBytes });
  // The build cache: a retained module built from identical inputs is reused, not recompiled.
  const buildCache = {
    lookup: (name: string, key: string) => {
      const hit = registry.cachedBuild(name, key);
      if (hit) return { sha256: hit.module.sha256, wasm: hit.bytes };
      // A compile follows: boot the pre-flight worker (~0.3 s) meanwhile, not after it. A restart
      // with nothing changed never needs it (unchanged builds are not pre-flighted).
      if (registry.lastBuildKey(name) !== key) warmPreflight();
      return undefined;
    },
  };
  // Rust filters' cargo output lives in the state directory, outside the watched filters folder.
  const cargoTargetDir = path.join(stateDir, "cargo-target");
  const scheduler = new BuildScheduler((name) => buildFilter(config.filtersDir, name, { validate, cache: buildCache, cargoTargetDir }), {
    onStart: (name) => {
      registry.buildStarted(name);
      events.emit({ type: "build.started", filter: name });
    },
    onResult: async (result) => {
      if (!present.has(result.name)) return;
      if (!result.ok) {
        registry.buildFailed(result.name, result.error, result.manifest ? defaultsOf(result.manifest) : undefined);
        log.error({ filter: result.name, buildMs: result.buildMs, error: result.error }, "filter build failed; last good module keeps serving");
        events.emit({ type: "build.failed", filter: result.name, error: result.error, buildMs: result.buildMs });
        return;
      }
      const current = registry.get(result.name)?.module;
      // Same inputs as the folder's last successful build (a restart, a touch, an identical save):
      // nothing changes, not even an uploaded module that replaced that build since.
      if (current && result.buildKey !== undefined && result.buildKey === registry.lastBuildKey(result.name)) {
        registry.buildUnchanged(result.name);
        events.emit({ type: "build.succeeded", filter: result.name, sha256: current.sha256, buildMs: result.buildMs, bytes: current.size });
        log.info({ filter: result.name, sha256: current.sha256, buildMs: result.buildMs, cache: "unchanged" }, "filter unchanged: same inputs as its last build");
        return;
      }
      // Pre-flight (compile/preflight-gate.ts): started, configured and its filter.test.json run as
      // Envoy would, or refused.
      const refused = await preflightGate(registry, state).checkBuild(result, { filtersDir: config.filtersDir, log });
      if (refused !== undefined) {
        registry.buildFailed(result.name, refused, defaultsOf(result.manifest));
        log.error({ filter: result.name, buildMs: result.buildMs, error: refused }, "filter refused by the pre-flight; last good module keeps serving");
        events.emit({ type: "build.failed", filter: result.name, error: refused, buildMs: result.buildMs });
        return;
      }
      const capabilities = moduleCapabilities(result.wasm, result.manifest.capabilities ?? []);
      if (capabilities.undeclaredImports.length > 0) {
        log.warn({ filter: result.name, undeclaredImports: capabilities.undeclaredImports }, "filter imports host functions its filter.json does not declare: Envoy will deny those calls");
      }
      try {
        await registry.commitModule(result.name, result.wasm, {
          sha256: result.sha256, rootId: result.rootId, buildMs: result.buildMs, capabilities,
          ...(result.buildKey !== undefined ? { buildKey: result.buildKey } : {}),
        }, defaultsOf(result.manifest), () => {
          // The event before the registry changes: that publishes and pushes at once, and events
          // must read in causal order (build.succeeded, snapshot.published, xds.pushed).
          events.emit({ type: "build.succeeded", filter: result.name, sha256: result.sha256, buildMs: result.buildMs, bytes: result.wasm.byteLength });
        });
      } catch (err) {
        const error = `${result.name}: cannot store the module: ${(err as Error).message}`;
        registry.buildFailed(result.name, error, defaultsOf(result.manifest));
        log.error({ filter: result.name, error }, "filter built but not stored; last good module keeps serving");
        events.emit({ type: "build.failed", filter: result.name, error, buildMs: result.buildMs });
        return;
      }
      // An edit (a new module) ends a rollback pin.
      if (current && current.sha256 !== result.sha256 && state.choice(result.name).pinnedSha256) {
        void state.update(result.name, { pinnedSha256: undefined }).catch((err: unknown) => log.error({ err }, "cannot clear pin"));
      }
      const how = result.cached ? "hit" : "miss";
      log.info({ filter: result.name, sha256: result.sha256, bytes: result.wasm.byteLength, buildMs: result.buildMs, cache: how }, result.cached ? "filter module reused from the build cache" : "filter built");
    },
  }, buildWorkers);

  const health = new HealthMonitor({ registry, state, events, log: log.child({ component: "health" }) }, { threshold: config.autoDisableAfter, windowMs: config.autoDisableWindowS * 1000 });
  // A stats stream that goes silent while open means a stuck worker (monitor.ts).
  setInterval(() => health.checkStalls(), 1000).unref();
  // Replicas: a download from this module server may be awaited by another replica's stream.
  const fetchSink = shared ? await shared.fetchRelay(fetches, log.child({ component: "module-server" })) : fetches;
  const moduleServer = createModuleServer(registry, fetchSink, log, { tls, events });
  let ready = false;
  const replica = {
    id: config.replicaId, builder: () => shared?.election.isBuilder ?? true, ...(shared ? { directory: () => shared.directory.list() } : {}),
  };
  const admin = createAdminApi({
    registry, state, clients, events, snapshot: () => cache.get(), resourceAt: (t, n, v) => cache.resourceAt(t, n, v),
    ready: () => ready, maxModuleBytes: config.maxModuleBytes, health, replica,
    routes: routes ? () => routes.view() : fixedRoutesView(defaultRouteTable(config.upstream)),
  }, log, { token: config.adminToken });
  // Every call on the xDS port, the MetricsService's too: CP_XDS_TOKEN and/or mTLS (xds/auth.ts).
  const xdsAuth = new XdsAuth({ ...(config.xdsToken !== undefined ? { token: config.xdsToken } : {}), mtls: tls?.clientCa !== undefined }, log.child({ component: "xds" }));
  const ads = createXdsServer({ cache, clients, fetches, log: log.child({ component: "xds" }), auth: xdsAuth });
  // Envoy's metrics_service stat sink streams to the same gRPC server; the failure counters of
  // Wasm plugins feed the health monitor, which rolls back or disables through operator state.
  // Stats count only from the connection of that node's xDS stream (health/metrics-service.ts).
  addMetricsService(ads, {
    opened: (node, peer) => health.opened(node, peer), closed: (node) => health.closed(node), heard: (node, at) => health.heard(node, at),
    report: (r) => void health.report(r), dropped: (node, peer, at) => health.dropped(node, peer, at),
  }, log.child({ component: "health" }), { auth: xdsAuth, bound: (node, peer) => clients.hasStream(node, peer) });
  clients.onNack((client, type, nack) => log.warn({ node: client.nodeId, type: shortName(type.typeUrl), version: nack.version, error: nack.message }, "NACK recorded"));

  await moduleServer.listen({ host: config.moduleHost, port: config.modulePort });
  await admin.listen({ host: config.adminHost, port: config.adminPort });

  // The builder: scans the filters folder, builds what changed, and watches it. A single control
  // plane always builds; replicas on etcd elect one builder (replicas/builder-election.ts).
  let watcher: FilterWatcher | undefined;
  const startBuilding = async (): Promise<void> => {
    const onDisk = await listFilters(config.filtersDir);
    for (const name of onDisk) {
      present.add(name);
      scheduler.schedule(name);
    }
    // Restored filters without a folder: uploads stay; ones built from a folder deleted while the
    // control plane was down go.
    for (const { name } of registry.list()) {
      if (onDisk.includes(name)) continue;
      if (registry.lastBuildKey(name) === undefined) present.add(name);
      else await registry.removeFilter(name).catch((err: unknown) => log.error({ filter: name, err }, "cannot delete the record of a removed filter"));
    }
    watcher = watchFilters(config.filtersDir, {
      changed: (name) => {
        present.add(name);
        scheduler.schedule(name);
      },
      removed: (name) => {
        present.delete(name);
        scheduler.cancel(name);
        events.emit({ type: "filter.removed", filter: name }); // before the pushes removing it
        registry.removeFilter(name).catch((err: unknown) => log.error({ filter: name, err }, "cannot delete the record of a removed filter"));
        log.info({ filter: name }, "filter removed");
      },
      error: (err) => log.error({ err }, "filters watcher failed"),
      ignored: (name, reason) => log.warn({ folder: name, reason }, "folder in the filters dir ignored"),
    });
    await watcher.ready;
  };
  rebuildAll = () => {
    if (!watcher) return;
    for (const name of present) scheduler.schedule(name);
  };
  const stopBuilding = async (): Promise<void> => {
    const w = watcher;
    watcher = undefined;
    await w?.close();
    for (const name of [...present]) scheduler.cancel(name);
    present.clear();
  };
  if (shared) {
    let building: Promise<void> = Promise.resolve();
    shared.election.start({
      elected: () => {
        shared.directory.update({ builder: true });
        building = building.then(startBuilding).catch((err: unknown) => log.error({ err }, "builder start failed"));
      },
      deposed: () => {
        shared.directory.update({ builder: false });
        building = building.then(stopBuilding).catch((err: unknown) => log.error({ err }, "builder stop failed"));
      },
    });
    // The builder collects modules no record retains, after a grace that covers a commit in flight
    // on another replica (module written, record not yet).
    setInterval(() => {
      if (!shared.election.isBuilder) return;
      registry.collectShared(SHARED_COLLECT_GRACE_MS).then((problems) => {
        for (const problem of problems) log.warn({ problem }, "module collection");
      }).catch((err: unknown) => log.warn({ err: (err as Error).message }, "module collection skipped"));
    }, 60_000).unref();
    events.subscribe((e) => {
      if (e.type === "client.connected" || e.type === "client.disconnected") {
        shared.directory.update({ envoys: [...new Set(clients.list().map((c) => c.nodeId))].sort() });
      }
    });
    shared.directory.start();
  } else {
    await startBuilding();
    await scheduler.idle();
  }
  // Publish only now: a reconnecting Envoy must see the full set, never a partial one.
  publisher.start();
  // Only now accept Envoys: a reconnecting one then meets the full snapshot at once and, holding
  // the same versions, is sent nothing.
  await listenXds(ads, config.xdsHost, config.xdsPort, tls);
  ready = true;
  log.info({ xds: `${config.xdsHost}:${config.xdsPort}`, modules: `${config.moduleHost}:${config.modulePort}`, admin: `${config.adminHost}:${config.adminPort}`, tls: tls ? (tls.clientCa ? "mtls" : "tls") : "off", xdsAuth: xdsAuth.mode, adminAuth: config.adminToken !== undefined, filters: registry.list().map((f) => `${f.name}:${f.status}`), stateDir, buildWorkers, startupMs: Math.round(performance.now()) }, "control plane ready");

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    await stopBuilding();
    await routes?.close();
    await following?.close();
    await shared?.close();
    ads.forceShutdown();
    await Promise.allSettled([moduleServer.close(), admin.close(), closeCompiler(), closePreflight()]);
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((err: unknown) => {
  console.error(`wasm-xds: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
