import fs from "node:fs/promises";
import path from "node:path";
import { removeTempFiles, writeError, writeFileDurably } from "../store/durable-file.ts";

/** What an operator chose for one filter; unset fields fall back to the filter's manifest. */
export interface FilterChoice {
  enabled?: boolean;
  order?: number;
  configuration?: string;
  /**
   * "open": a filter without a working VM is skipped; "closed": requests get 503;
   * "reload" (default, registry/effective.ts): 503 like closed, and Envoy rebuilds a crashed VM (with backoff) instead of
   * leaving it poisoned. Sent as the Wasm plugin's failure_policy.
   */
  failPolicy?: FailPolicy;
  /**
   * Where the filter runs: which Envoys (node clusters or ids) and where in their route table
   * (route names, virtual hosts). Absent: the manifest's targets, else everywhere; every list
   * empty: everywhere (an operator's explicit "everywhere" wins over a manifest's targets).
   */
  targets?: Targets;
  /**
   * Per route name, a plugin configuration that replaces the filter's own on that route (a
   * second HCM filter slot sharing the filter's VM: xds/route-configurations.ts).
   */
  routeConfigurations?: Record<string, string>;
  /** A previous module pinned by a rollback, until the next successful build or an unpin. */
  pinnedSha256?: string;
}

export type FailPolicy = "open" | "closed" | "reload";

export const FAIL_POLICIES: readonly FailPolicy[] = ["open", "closed", "reload"];

export function isFailPolicy(v: unknown): v is FailPolicy {
  return typeof v === "string" && (FAIL_POLICIES as readonly string[]).includes(v);
}

/**
 * Where a filter runs. clusters/nodes pick Envoys (a node-targeted filter is left out of other
 * Envoys' listeners); routes/hosts pick places in the route table (route names; virtual hosts by
 * name or by one of their domains), delivered as RDS per-route switches only. Both kinds
 * combine: a filter with both runs on the named routes of the named Envoys.
 */
export interface Targets {
  clusters: string[];
  nodes: string[];
  routes: string[];
  hosts: string[];
}

export const TARGET_KINDS = ["clusters", "nodes", "routes", "hosts"] as const;

/** Targets with every list present, each deduplicated and sorted (the stored form). */
export function normalizeTargets(t: Partial<Record<(typeof TARGET_KINDS)[number], readonly string[]>>): Targets {
  const list = (x: readonly string[] | undefined): string[] => [...new Set(x ?? [])].sort();
  return { clusters: list(t.clusters), nodes: list(t.nodes), routes: list(t.routes), hosts: list(t.hosts) };
}

/** Names Envoys (clusters or nodes): the filter is in the listeners of those Envoys only. */
export function targetsNodes(t: Targets | undefined): boolean {
  return t !== undefined && (t.clusters.length > 0 || t.nodes.length > 0);
}

/** Names places in the route table (routes or hosts): the filter runs only there. */
export function targetsRoutes(t: Targets | undefined): boolean {
  return t !== undefined && (t.routes.length > 0 || t.hosts.length > 0);
}

export interface OperatorStateData {
  filters: Record<string, FilterChoice>;
}

export type StateListener = () => void;

/** Saved state and the store revision it was saved at (shared stores order changes by it). */
export interface SavedState {
  data: OperatorStateData;
  revision: number;
}

/**
 * Where operator state persists: FileStateBackend (the default) or a shared store
 * (store/etcd-state.ts), whose other replicas' changes arrive through OperatorState.applyShared.
 */
export interface StateBackend {
  /** The saved state, or undefined when nothing was ever saved. */
  load(): Promise<SavedState | undefined>;
  /**
   * Saves `mutate(latest saved data)` and resolves once it is durable. A shared store re-runs
   * `mutate` on the newer data when another replica wrote in between (a compare-and-swap), so
   * two writes never overwrite each other. Throws StoreWriteError (nothing saved) otherwise.
   */
  update(mutate: (latest: OperatorStateData) => OperatorStateData): Promise<SavedState>;
}

/** One JSON file, written crash-safely (store/durable-file.ts). */
export class FileStateBackend implements StateBackend {
  /** What the file holds (this process is its only writer). */
  private latest: SavedState = { data: { filters: {} }, revision: 0 };

  constructor(readonly file: string) {}

  async load(): Promise<SavedState | undefined> {
    // A kill between a temp write and its rename leaves `<file>.<pid>[.<n>].tmp`: garbage.
    await removeTempFiles(path.dirname(this.file), `${path.basename(this.file)}.`);
    let text: string;
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new Error(`cannot read state file ${this.file}: ${(err as Error).message}`);
    }
    try {
      this.latest = { data: parseState(JSON.parse(text)), revision: 0 };
      return this.latest;
    } catch (err) {
      throw new Error(`state file ${this.file} is invalid: ${(err as Error).message}`);
    }
  }

  async update(mutate: (latest: OperatorStateData) => OperatorStateData): Promise<SavedState> {
    const data = mutate(this.latest.data);
    try {
      // OperatorState chains its updates: never two at once.
      await writeFileDurably(this.file, JSON.stringify(data, null, 2) + "\n", { serialized: true });
    } catch (err) {
      throw writeError("cannot save operator state", err);
    }
    this.latest = { data, revision: this.latest.revision + 1 };
    return this.latest;
  }
}

/**
 * Operator choices (enable/disable, order, configuration, targets, fail policy, pins), persisted
 * so they survive a restart. A change is saved first and applied to memory only once the save
 * succeeded: a failed save (read-only or full disk) changes nothing anywhere, and no later write
 * can carry it along.
 */
export class OperatorState {
  private data: OperatorStateData = { filters: {} };
  /** Store revision of `data`: a shared change older than what is applied is ignored. */
  private revision = 0;
  private readonly listeners = new Set<StateListener>();
  private writeChain: Promise<void> = Promise.resolve();
  private readonly backend: StateBackend;

  /** A file path (the default file backend) or any StateBackend. */
  constructor(where: string | StateBackend) {
    this.backend = typeof where === "string" ? new FileStateBackend(where) : where;
  }

  async load(): Promise<void> {
    const saved = await this.backend.load();
    this.data = saved?.data ?? { filters: {} };
    this.revision = saved?.revision ?? 0;
  }

  choice(name: string): FilterChoice {
    return this.data.filters[name] ?? {};
  }

  /**
   * Saves a change, then applies it and tells listeners (so a snapshot only follows saved state).
   * A field set to `undefined` in `change` is cleared. Updates apply in call order, each on top
   * of the latest saved state; one that fails to save (StoreWriteError) leaves state as it was.
   */
  update(name: string, change: FilterChoice): Promise<void> {
    const step = this.writeChain.catch(() => undefined).then(async () => {
      const saved = await this.backend.update((latest) => {
        const next: FilterChoice = { ...(latest.filters[name] ?? {}), ...change };
        for (const key of Object.keys(next) as (keyof FilterChoice)[]) if (next[key] === undefined) delete next[key];
        return { filters: { ...latest.filters, [name]: next } };
      });
      this.adopt(saved);
    });
    this.writeChain = step;
    return step.then(() => {
      for (const listener of this.listeners) listener();
    });
  }

  /** State another replica saved (a shared store's watch); older than what is applied: ignored. */
  applyShared(saved: SavedState): void {
    if (!this.adopt(saved)) return;
    for (const listener of this.listeners) listener();
  }

  onChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private adopt(saved: SavedState): boolean {
    if (saved.revision < this.revision) return false;
    this.revision = saved.revision;
    this.data = saved.data;
    return true;
  }
}

/** Parses stored operator state, keeping only well-formed fields (shared stores use it too). */
export function parseState(raw: unknown): OperatorStateData {
  if (typeof raw !== "object" || raw === null || typeof (raw as { filters?: unknown }).filters !== "object") {
    throw new Error("expected {\"filters\": {...}}");
  }
  const filters: Record<string, FilterChoice> = {};
  for (const [name, value] of Object.entries((raw as { filters: Record<string, unknown> }).filters)) {
    const v = value as Record<string, unknown>;
    const choice: FilterChoice = {};
    if (typeof v.enabled === "boolean") choice.enabled = v.enabled;
    if (typeof v.order === "number" && Number.isInteger(v.order)) choice.order = v.order;
    if (typeof v.configuration === "string") choice.configuration = v.configuration;
    if (isFailPolicy(v.failPolicy)) choice.failPolicy = v.failPolicy;
    if (typeof v.pinnedSha256 === "string" && /^[0-9a-f]{64}$/.test(v.pinnedSha256)) choice.pinnedSha256 = v.pinnedSha256;
    const t = v.targets as Record<string, unknown> | undefined;
    const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((e): e is string => typeof e === "string") : []);
    // State saved before routes/hosts existed has clusters and nodes only: the others are empty.
    if (t && typeof t === "object") {
      choice.targets = normalizeTargets({
        clusters: strings(t.clusters), nodes: strings(t.nodes), routes: strings(t.routes), hosts: strings(t.hosts),
      });
    }
    const rc = v.routeConfigurations;
    if (rc && typeof rc === "object" && !Array.isArray(rc)) {
      const entries = Object.entries(rc as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === "string");
      if (entries.length > 0) choice.routeConfigurations = Object.fromEntries(entries);
    }
    filters[name] = choice;
  }
  return { filters };
}
