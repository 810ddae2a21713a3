import type { ModuleCapabilities } from "../compile/capabilities.ts";
import type { FailPolicy, Targets } from "../state/operator-state.ts";
import type { FilterRecord, FilterRecordStore } from "../store/filter-records.ts";
import type { ModuleMeta, ModuleStore } from "../store/module-store.ts";
import { KeyedChain } from "./keyed-chain.ts";

/** The manifest fields the registry cares about (structurally the build's Manifest). */
export interface FilterDefaults {
  order?: number;
  enabled?: boolean;
  configuration?: string;
  failPolicy?: FailPolicy;
  /** filter.json `targets` (normalized); an operator's targets replace them. */
  targets?: Targets;
}

export interface GoodModule {
  sha256: string;
  rootId: string;
  size: number;
  builtAt: string;
  buildMs: number;
  /** Built from the filter's source, or uploaded prebuilt through the API. */
  source: "build" | "upload";
  /** Granted capabilities (sent to Envoy) and undeclared imports; absent: base + all callbacks. */
  capabilities?: ModuleCapabilities;
  /** Hash of the build's inputs (compile/build-key.ts): the build cache's key. Absent for uploads. */
  buildKey?: string;
}

/** What a new good module brings; size and builtAt are derived when it is committed. */
export type NewModule = Omit<GoodModule, "size" | "builtAt" | "source"> & { source?: GoodModule["source"]; builtAt?: string };

/** Durable backing of the registry: modules by sha256 and per-filter records (controlplane/store/). */
export interface RegistryPersistence {
  modules: ModuleStore;
  records: FilterRecordStore;
}

export type BuildStatus = "ok" | "building" | "error";

export interface FilterEntry {
  name: string;
  status: BuildStatus;
  /** Compiler or validation message of the last failed build, while it is the latest result. */
  error?: string;
  /** The module Envoy runs; a failed build leaves it in place. */
  module?: GoodModule;
  defaults: FilterDefaults;
}

export type RegistryListener = () => void;

/**
 * Good modules kept servable per filter (the current one included): an Envoy still fetching an
 * older one is not cut off, and an operator can roll back to any of them.
 */
export const RETAINED_BUILDS_PER_FILTER = 4;

/**
 * Filters, their build status and their modules by sha256. The build writes here; the module
 * server and the snapshot read. A module is stored before anything can announce it.
 *
 * With persistence, commitModule() writes the module and the filter's record to the store first
 * and changes memory only once both writes succeeded; restore() brings back every filter (uploads
 * and retained history included) after a restart. Without, the registry is memory-only.
 */
export class FilterRegistry {
  private readonly entries = new Map<string, FilterEntry>();
  private readonly modules = new Map<string, Uint8Array>();
  /** Per filter, its retained good modules, oldest first. */
  private readonly history = new Map<string, GoodModule[]>();
  /** Per filter, the build key of its folder's last successful build. */
  private readonly lastBuildKeys = new Map<string, string>();
  private readonly listeners = new Set<RegistryListener>();
  /** Per filter, its durable changes (commits and removals) run one at a time, in order. */
  private readonly chains = new KeyedChain();
  /** Modules written to the store whose record is not saved yet: collection must keep them. */
  private readonly inFlight = new Map<string, number>();
  /** Per filter, the store revision memory reflects: an older change (a late watch event) is ignored. */
  private readonly revisions = new Map<string, number>();
  private pinnedOf: (name: string) => string | undefined = () => undefined;

  constructor(private readonly persistence?: RegistryPersistence) {}

  /** A filter's pinned module is retained beyond RETAINED_BUILDS_PER_FILTER (rollback pins). */
  setPinned(pinnedOf: (name: string) => string | undefined): void {
    this.pinnedOf = pinnedOf;
  }

  list(): FilterEntry[] {
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): FilterEntry | undefined {
    return this.entries.get(name);
  }

  moduleBytes(sha256: string): Uint8Array | undefined {
    return this.modules.get(sha256);
  }

  /** A module by sha256: a retained one from memory, else whatever the store holds under that name. */
  async readModule(sha256: string): Promise<Uint8Array | undefined> {
    return this.modules.get(sha256) ?? (await this.persistence?.modules.get(sha256));
  }

  /** The filter's retained good modules, oldest first (the current one last). */
  historyOf(name: string): GoodModule[] {
    return [...(this.history.get(name) ?? [])];
  }

  /** Build key of the filter folder's last successful build (undefined: never built, or upload-only). */
  lastBuildKey(name: string): string | undefined {
    return this.lastBuildKeys.get(name);
  }

  /** A retained module of `name` built from inputs with this key (the build cache). */
  cachedBuild(name: string, buildKey: string): { module: GoodModule; bytes: Uint8Array } | undefined {
    const module = [...(this.history.get(name) ?? [])].reverse().find((m) => m.buildKey === buildKey);
    const bytes = module ? this.modules.get(module.sha256) : undefined;
    return module && bytes ? { module, bytes } : undefined;
  }

  /**
   * Loads every filter record and its modules from the store (start-up, before any build).
   * Returns what could not be restored (a damaged record, a missing or damaged module), and
   * collects stored modules no record references (local stores; a shared store is collected by
   * its builder replica, collectShared()).
   */
  async restore(): Promise<string[]> {
    if (!this.persistence) return [];
    const { records, problems, revision } = await this.persistence.records.load();
    for (const record of records) problems.push(...(await this.adopt(record, revision)));
    if (!this.persistence.records.shared) problems.push(...(await this.collect()));
    return problems;
  }

  /**
   * A record another replica saved (a shared store's watch). Changes older than what memory
   * reflects are ignored; modules are fetched from the store before anything changes.
   */
  applyShared(record: FilterRecord, revision: number): Promise<string[]> {
    return this.serial(record.name, () => this.adopt(record, revision));
  }

  /** A record another replica deleted (its folder was removed). */
  removeShared(name: string, revision: number): Promise<void> {
    return this.serial(name, async () => {
      if (revision < (this.revisions.get(name) ?? -1)) return;
      this.revisions.delete(name);
      this.removed(name);
    });
  }

  /**
   * The whole store as read at `revision` (a shared store's watch reconnected: changes may have
   * been missed). Filters the store no longer has, and no newer change brought, are removed.
   */
  async resyncShared(records: FilterRecord[], revision: number): Promise<string[]> {
    const problems: string[] = [];
    const names = new Set(records.map((r) => r.name));
    for (const record of records) problems.push(...(await this.applyShared(record, revision)));
    for (const name of [...this.entries.keys()]) {
      if (!names.has(name)) await this.removeShared(name, revision);
    }
    return problems;
  }

  buildStarted(name: string): void {
    const entry = this.entries.get(name);
    if (entry) entry.status = "building";
    else this.entries.set(name, { name, status: "building", defaults: {} });
    this.emit();
    this.shareStatus(name, "building");
  }

  /**
   * A new good module for `name`: stored (bytes, then the filter's record) and only then made
   * current. Throws StoreWriteError when a write fails; nothing changed then, in memory or in
   * the store's records. Commits and removals of one filter run in order. `beforeApply` runs
   * once the writes succeeded, just before memory changes (and listeners publish).
   */
  commitModule(name: string, wasm: Uint8Array, module: NewModule, defaults: FilterDefaults, beforeApply?: () => void): Promise<GoodModule> {
    return this.serial(name, async () => {
      const good = goodModule(wasm, module);
      if (!this.persistence) {
        beforeApply?.();
        const { kept, evicted } = retainIn(this.history.get(name) ?? [], good, this.pinnedOf(name));
        this.apply(name, wasm, good, kept, evicted, defaults);
        return good;
      }
      const { modules, records } = this.persistence;
      const meta: ModuleMeta = { sha256: good.sha256, size: good.size, filter: name, source: good.source, rootId: good.rootId, createdAt: good.builtAt };
      if (good.capabilities) meta.capabilities = good.capabilities;
      if (good.buildKey !== undefined) meta.buildKey = good.buildKey;
      let evicted: GoodModule[] = [];
      this.inFlight.set(good.sha256, (this.inFlight.get(good.sha256) ?? 0) + 1);
      let saved: { record: FilterRecord; revision: number };
      try {
        await modules.put(wasm, meta);
        // Retention is computed on the stored record: on a shared store another replica may
        // have committed (an upload) since this one last heard.
        saved = await records.update(name, (latest) => {
          const retained = retainIn(latest?.history ?? [], good, this.pinnedOf(name));
          evicted = retained.evicted;
          const record: FilterRecord = { name, history: retained.kept, defaults };
          const lastBuildKey = good.source === "build" ? good.buildKey : latest?.lastBuildKey;
          if (lastBuildKey !== undefined) record.lastBuildKey = lastBuildKey;
          if (records.shared) record.status = "ok";
          return record;
        });
      } finally {
        const n = (this.inFlight.get(good.sha256) ?? 1) - 1;
        if (n > 0) this.inFlight.set(good.sha256, n);
        else this.inFlight.delete(good.sha256);
      }
      const loaded = await this.loadModules(saved.record, new Map([[good.sha256, wasm]]));
      beforeApply?.();
      this.setRecord(saved.record, loaded.kept, loaded.bytes, saved.revision);
      if (evicted.length > 0 && !records.shared) await this.collect(evicted.map((m) => m.sha256));
      return good;
    });
  }

  /**
   * Memory-only form of commitModule (tests, and registries without persistence): the module is
   * current at once.
   */
  buildSucceeded(name: string, wasm: Uint8Array, module: NewModule, defaults: FilterDefaults): void {
    const good = goodModule(wasm, module);
    const { kept, evicted } = retainIn(this.history.get(name) ?? [], good, this.pinnedOf(name));
    this.apply(name, wasm, good, kept, evicted, defaults);
  }

  /** A build whose inputs have not changed since the last successful one: only the status changes. */
  buildUnchanged(name: string): void {
    const entry = this.entries.get(name);
    if (!entry?.module) return;
    this.entries.set(name, { name, status: "ok", module: entry.module, defaults: entry.defaults });
    this.emit();
    this.shareStatus(name, "ok");
  }

  /** A failed build changes nothing Envoy sees: the last good module and its defaults stay. */
  buildFailed(name: string, error: string, manifestDefaults?: FilterDefaults): void {
    const prior = this.entries.get(name);
    // With a module running, its defaults stay; a filter that never built shows its manifest's.
    const defaults = prior?.module ? prior.defaults : manifestDefaults ?? prior?.defaults ?? {};
    const entry: FilterEntry = { name, status: "error", error, defaults };
    if (prior?.module) entry.module = prior.module;
    this.entries.set(name, entry);
    this.emit();
    this.shareStatus(name, "error", error, manifestDefaults);
  }

  /** Memory-only removal (see removeFilter for the durable one). */
  removed(name: string): void {
    if (!this.entries.delete(name)) return;
    const kept = this.history.get(name) ?? [];
    this.history.delete(name);
    this.lastBuildKeys.delete(name);
    for (const m of kept) this.forget(m.sha256);
    this.emit();
  }

  /**
   * The filter is gone (its folder was deleted): its record is deleted from the store and its
   * modules collected. The filter leaves memory even if the store cannot be written (the folder,
   * not the store, says what exists); the error is then thrown for the caller to report.
   */
  removeFilter(name: string): Promise<void> {
    return this.serial(name, async () => {
      const retained = (this.history.get(name) ?? []).map((m) => m.sha256);
      let failure: unknown;
      try {
        const revision = await this.persistence?.records.delete(name);
        if (revision !== undefined) this.revisions.set(name, revision);
      } catch (err) {
        failure = err;
      }
      this.removed(name);
      if (failure !== undefined) throw failure;
      if (!this.persistence?.records.shared) await this.collect(retained);
    });
  }

  /**
   * Collection for a shared store (its builder replica runs it now and then): modules no record
   * retains and stored longer ago than `graceMs` are deleted. The grace covers a commit on
   * another replica between its module write and its record write.
   */
  async collectShared(graceMs: number, now = Date.now()): Promise<string[]> {
    if (!this.persistence) return [];
    const referenced = new Set<string>(this.inFlight.keys());
    for (const kept of this.history.values()) for (const m of kept) referenced.add(m.sha256);
    const problems: string[] = [];
    for (const meta of await this.persistence.modules.list()) {
      const storedAt = Date.parse(meta.storedAt ?? meta.createdAt);
      if (referenced.has(meta.sha256) || !(now - storedAt > graceMs)) continue;
      try {
        await this.persistence.modules.delete(meta.sha256);
      } catch (err) {
        problems.push(`cannot collect module ${meta.sha256}: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  onChange(listener: RegistryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Bytes of a record's modules: from memory, `extra`, or the store; a missing one is dropped with a problem. */
  private async loadModules(
    record: FilterRecord,
    extra = new Map<string, Uint8Array>(),
  ): Promise<{ kept: GoodModule[]; bytes: Map<string, Uint8Array>; problems: string[] }> {
    const kept: GoodModule[] = [];
    const bytes = new Map<string, Uint8Array>();
    const problems: string[] = [];
    for (const m of record.history) {
      const b = extra.get(m.sha256) ?? this.modules.get(m.sha256) ?? (await this.persistence?.modules.get(m.sha256));
      if (!b) {
        problems.push(`${record.name}: module ${m.sha256} is missing or damaged in the store; dropped from its history`);
        continue;
      }
      bytes.set(m.sha256, b);
      kept.push(m);
    }
    return { kept, bytes, problems };
  }

  /** A stored record made current in memory (its modules fetched first), unless memory is newer. */
  private async adopt(record: FilterRecord, revision: number): Promise<string[]> {
    if (revision < (this.revisions.get(record.name) ?? -1)) return [];
    const loaded = await this.loadModules(record);
    this.setRecord(record, loaded.kept, loaded.bytes, revision);
    return loaded.problems;
  }

  /** Memory takes a stored record: its history, its current module, its status (shared stores). */
  private setRecord(record: FilterRecord, kept: GoodModule[], bytes: Map<string, Uint8Array>, revision: number): void {
    const { name } = record;
    if (revision < (this.revisions.get(name) ?? -1)) return;
    this.revisions.set(name, revision);
    const before = this.history.get(name) ?? [];
    for (const [sha, b] of bytes) this.modules.set(sha, b);
    if (kept.length > 0) this.history.set(name, kept);
    else this.history.delete(name);
    if (record.lastBuildKey !== undefined) this.lastBuildKeys.set(name, record.lastBuildKey);
    else this.lastBuildKeys.delete(name);
    for (const m of before) if (!kept.some((k) => k.sha256 === m.sha256)) this.forget(m.sha256);
    const current = kept.at(-1);
    if (!current && record.status === undefined) {
      // Nothing to serve and no status to show (a local record whose modules are all gone).
      if (this.entries.delete(name)) this.emit();
      return;
    }
    const entry: FilterEntry = { name, status: record.status ?? "ok", defaults: record.defaults };
    if (record.error !== undefined && entry.status === "error") entry.error = record.error;
    if (current) entry.module = current;
    this.entries.set(name, entry);
    this.emit();
  }

  /**
   * Shared stores carry build status, so every replica shows what the builder saw. Best effort:
   * a status that cannot be written (the store is down) is only this replica's until the next.
   */
  private shareStatus(name: string, status: BuildStatus, error?: string, manifestDefaults?: FilterDefaults): void {
    const records = this.persistence?.records;
    if (!records?.shared) return;
    void this.serial(name, async () => {
      const saved = await records.update(name, (latest) => {
        const hasModule = (latest?.history.length ?? 0) > 0;
        const record: FilterRecord = {
          ...(latest ?? { name, history: [] }),
          defaults: hasModule ? latest!.defaults : manifestDefaults ?? latest?.defaults ?? {},
          status,
        };
        if (error !== undefined) record.error = error;
        else delete record.error;
        return record;
      });
      await this.adopt(saved.record, saved.revision);
    }).catch(() => undefined);
  }

  private apply(name: string, wasm: Uint8Array, good: GoodModule, kept: GoodModule[], evicted: GoodModule[], defaults: FilterDefaults): void {
    this.modules.set(good.sha256, wasm);
    this.history.set(name, kept);
    if (good.source === "build" && good.buildKey !== undefined) this.lastBuildKeys.set(name, good.buildKey);
    for (const m of evicted) this.forget(m.sha256);
    this.entries.set(name, { name, status: "ok", module: good, defaults });
    this.emit();
  }

  /**
   * Deletes stored modules no filter retains (all of them, or only `candidates`), unless a
   * commit is writing them. Returns failures as messages: collection is best effort, a module
   * left behind is collected on a later pass.
   */
  private async collect(candidates?: string[]): Promise<string[]> {
    if (!this.persistence) return [];
    const referenced = new Set<string>(this.inFlight.keys());
    for (const kept of this.history.values()) for (const m of kept) referenced.add(m.sha256);
    const shas = candidates ?? (await this.persistence.modules.list()).map((m) => m.sha256);
    const problems: string[] = [];
    for (const sha of new Set(shas)) {
      if (referenced.has(sha)) continue;
      try {
        await this.persistence.modules.delete(sha);
      } catch (err) {
        problems.push(`cannot collect module ${sha}: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.chains.run(name, fn);
  }

  private forget(sha256: string): void {
    // Two filters may build to identical bytes; keep the module while any filter holds it.
    for (const [, kept] of this.history) if (kept.some((m) => m.sha256 === sha256)) return;
    this.modules.delete(sha256);
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

/** The history after adding `good`: the last N plus a pinned module, oldest first. */
function retainIn(history: readonly GoodModule[], good: GoodModule, pinned: string | undefined): { kept: GoodModule[]; evicted: GoodModule[] } {
  const all = history.filter((m) => m.sha256 !== good.sha256);
  all.push(good);
  const lastN = all.slice(-RETAINED_BUILDS_PER_FILTER);
  const pin = pinned ? all.find((m) => m.sha256 === pinned) : undefined;
  const kept = pin && !lastN.includes(pin) ? [pin, ...lastN] : lastN;
  return { kept, evicted: all.filter((m) => !kept.includes(m)) };
}

function goodModule(wasm: Uint8Array, module: NewModule): GoodModule {
  const { builtAt, ...rest } = module;
  const good: GoodModule = { source: "build", ...rest, size: wasm.byteLength, builtAt: builtAt ?? new Date().toISOString() };
  return good;
}
