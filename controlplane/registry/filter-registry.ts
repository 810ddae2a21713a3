import type { ModuleCapabilities } from "../compile/capabilities.ts";
import type { FailPolicy } from "../state/operator-state.ts";
import type { FilterRecord, FilterRecordStore } from "../store/filter-records.ts";
import type { ModuleMeta, ModuleStore } from "../store/module-store.ts";

/** The manifest fields the registry cares about (structurally the build's Manifest). */
export interface FilterDefaults {
  order?: number;
  enabled?: boolean;
  configuration?: string;
  failPolicy?: FailPolicy;
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
  /** Per filter, the tail of its chain of durable changes (commits and removals run in order). */
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Modules written to the store whose record is not saved yet: collection must keep them. */
  private readonly inFlight = new Map<string, number>();
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
   * collects stored modules no record references.
   */
  async restore(): Promise<string[]> {
    if (!this.persistence) return [];
    const { records, problems } = await this.persistence.records.load();
    for (const record of records) {
      const kept: GoodModule[] = [];
      for (const m of record.history) {
        const bytes = await this.persistence.modules.get(m.sha256);
        if (!bytes) {
          problems.push(`${record.name}: module ${m.sha256} is missing or damaged in the store; dropped from its history`);
          continue;
        }
        this.modules.set(m.sha256, bytes);
        kept.push(m);
      }
      const current = kept.at(-1);
      if (!current) continue;
      this.history.set(record.name, kept);
      if (record.lastBuildKey !== undefined) this.lastBuildKeys.set(record.name, record.lastBuildKey);
      this.entries.set(record.name, { name: record.name, status: "ok", module: current, defaults: record.defaults });
    }
    problems.push(...(await this.collect()));
    if (this.entries.size > 0) this.emit();
    return problems;
  }

  buildStarted(name: string): void {
    const entry = this.entries.get(name);
    if (entry) entry.status = "building";
    else this.entries.set(name, { name, status: "building", defaults: {} });
    this.emit();
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
      const { kept, evicted } = this.retain(name, good);
      if (this.persistence) {
        const meta: ModuleMeta = { sha256: good.sha256, size: good.size, filter: name, source: good.source, rootId: good.rootId, createdAt: good.builtAt };
        if (good.capabilities) meta.capabilities = good.capabilities;
        if (good.buildKey !== undefined) meta.buildKey = good.buildKey;
        const record: FilterRecord = { name, history: kept, defaults };
        const lastBuildKey = good.source === "build" ? good.buildKey : this.lastBuildKeys.get(name);
        if (lastBuildKey !== undefined) record.lastBuildKey = lastBuildKey;
        this.inFlight.set(good.sha256, (this.inFlight.get(good.sha256) ?? 0) + 1);
        try {
          await this.persistence.modules.put(wasm, meta);
          await this.persistence.records.save(record);
        } finally {
          const n = (this.inFlight.get(good.sha256) ?? 1) - 1;
          if (n > 0) this.inFlight.set(good.sha256, n);
          else this.inFlight.delete(good.sha256);
        }
      }
      beforeApply?.();
      this.apply(name, wasm, good, kept, evicted, defaults);
      if (evicted.length > 0) await this.collect(evicted.map((m) => m.sha256));
      return good;
    });
  }

  /**
   * Memory-only form of commitModule (tests, and registries without persistence): the module is
   * current at once.
   */
  buildSucceeded(name: string, wasm: Uint8Array, module: NewModule, defaults: FilterDefaults): void {
    const good = goodModule(wasm, module);
    const { kept, evicted } = this.retain(name, good);
    this.apply(name, wasm, good, kept, evicted, defaults);
  }

  /** A build whose inputs have not changed since the last successful one: only the status changes. */
  buildUnchanged(name: string): void {
    const entry = this.entries.get(name);
    if (!entry?.module) return;
    this.entries.set(name, { name, status: "ok", module: entry.module, defaults: entry.defaults });
    this.emit();
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
        await this.persistence?.records.delete(name);
      } catch (err) {
        failure = err;
      }
      this.removed(name);
      if (failure !== undefined) throw failure;
      await this.collect(retained);
    });
  }

  onChange(listener: RegistryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The history after adding `good`: the last N plus a pinned module, oldest first. */
  private retain(name: string, good: GoodModule): { kept: GoodModule[]; evicted: GoodModule[] } {
    const all = (this.history.get(name) ?? []).filter((m) => m.sha256 !== good.sha256);
    all.push(good);
    const lastN = all.slice(-RETAINED_BUILDS_PER_FILTER);
    const pinned = this.pinnedOf(name);
    const pin = pinned ? all.find((m) => m.sha256 === pinned) : undefined;
    const kept = pin && !lastN.includes(pin) ? [pin, ...lastN] : lastN;
    return { kept, evicted: all.filter((m) => !kept.includes(m)) };
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
    const prior = this.chains.get(name) ?? Promise.resolve();
    const next = prior.catch(() => undefined).then(fn);
    const tail = next.catch(() => undefined);
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return next;
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

function goodModule(wasm: Uint8Array, module: NewModule): GoodModule {
  const { builtAt, ...rest } = module;
  const good: GoodModule = { source: "build", ...rest, size: wasm.byteLength, builtAt: builtAt ?? new Date().toISOString() };
  return good;
}
