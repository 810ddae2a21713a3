import type { ModuleCapabilities } from "../build/capabilities.ts";
import type { FailPolicy } from "../state/operator-state.ts";

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
 */
export class FilterRegistry {
  private readonly entries = new Map<string, FilterEntry>();
  private readonly modules = new Map<string, Uint8Array>();
  /** Per filter, its retained good modules, oldest first. */
  private readonly history = new Map<string, GoodModule[]>();
  private readonly listeners = new Set<RegistryListener>();

  list(): FilterEntry[] {
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): FilterEntry | undefined {
    return this.entries.get(name);
  }

  moduleBytes(sha256: string): Uint8Array | undefined {
    return this.modules.get(sha256);
  }

  /** The filter's retained good modules, oldest first (the current one last). */
  historyOf(name: string): GoodModule[] {
    return [...(this.history.get(name) ?? [])];
  }

  buildStarted(name: string): void {
    const entry = this.entries.get(name);
    if (entry) entry.status = "building";
    else this.entries.set(name, { name, status: "building", defaults: {} });
    this.emit();
  }

  buildSucceeded(name: string, wasm: Uint8Array, module: Omit<GoodModule, "size" | "builtAt" | "source"> & { source?: GoodModule["source"] }, defaults: FilterDefaults): void {
    this.modules.set(module.sha256, wasm);
    const good: GoodModule = { source: "build", ...module, size: wasm.byteLength, builtAt: new Date().toISOString() };
    const kept = (this.history.get(name) ?? []).filter((m) => m.sha256 !== module.sha256);
    kept.push(good);
    const evicted = kept.splice(0, Math.max(0, kept.length - RETAINED_BUILDS_PER_FILTER));
    this.history.set(name, kept);
    for (const m of evicted) this.forget(m.sha256);
    this.entries.set(name, { name, status: "ok", module: good, defaults });
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

  removed(name: string): void {
    if (!this.entries.delete(name)) return;
    const kept = this.history.get(name) ?? [];
    this.history.delete(name);
    for (const m of kept) this.forget(m.sha256);
    this.emit();
  }

  onChange(listener: RegistryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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
