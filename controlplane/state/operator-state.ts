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
  /** Which Envoys run the filter (by node cluster or id); absent or empty = all. */
  targets?: Targets;
  /** A previous module pinned by a rollback, until the next successful build or an unpin. */
  pinnedSha256?: string;
}

export type FailPolicy = "open" | "closed" | "reload";

export const FAIL_POLICIES: readonly FailPolicy[] = ["open", "closed", "reload"];

export function isFailPolicy(v: unknown): v is FailPolicy {
  return typeof v === "string" && (FAIL_POLICIES as readonly string[]).includes(v);
}

export interface Targets {
  clusters: string[];
  nodes: string[];
}

export interface OperatorStateData {
  filters: Record<string, FilterChoice>;
}

export type StateListener = () => void;

/**
 * Where operator state persists. FileStateBackend is the default; a shared store (etcd, issue 11
 * part 3) implements the same two calls.
 */
export interface StateBackend {
  /** The saved state, or undefined when nothing was ever saved. */
  load(): Promise<OperatorStateData | undefined>;
  /** Durable when it resolves; throws StoreWriteError (nothing saved) otherwise. */
  save(data: OperatorStateData): Promise<void>;
}

/** One JSON file, written crash-safely (store/durable-file.ts). */
export class FileStateBackend implements StateBackend {
  constructor(readonly file: string) {}

  async load(): Promise<OperatorStateData | undefined> {
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
      return parseState(JSON.parse(text));
    } catch (err) {
      throw new Error(`state file ${this.file} is invalid: ${(err as Error).message}`);
    }
  }

  async save(data: OperatorStateData): Promise<void> {
    try {
      // OperatorState chains its saves: never two at once.
      await writeFileDurably(this.file, JSON.stringify(data, null, 2) + "\n", { serialized: true });
    } catch (err) {
      throw writeError("cannot save operator state", err);
    }
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
  private readonly listeners = new Set<StateListener>();
  private writeChain: Promise<void> = Promise.resolve();
  private readonly backend: StateBackend;

  /** A file path (the default file backend) or any StateBackend. */
  constructor(where: string | StateBackend) {
    this.backend = typeof where === "string" ? new FileStateBackend(where) : where;
  }

  async load(): Promise<void> {
    this.data = (await this.backend.load()) ?? { filters: {} };
  }

  choice(name: string): FilterChoice {
    return this.data.filters[name] ?? {};
  }

  /**
   * Saves a change, then applies it and tells listeners (so a snapshot only follows saved state).
   * A field set to `undefined` in `change` is cleared. Updates apply in call order, each on top
   * of the previous one; one that fails to save (StoreWriteError) leaves state as it was.
   */
  update(name: string, change: FilterChoice): Promise<void> {
    const step = this.writeChain.catch(() => undefined).then(async () => {
      const next: FilterChoice = { ...this.choice(name), ...change };
      for (const key of Object.keys(next) as (keyof FilterChoice)[]) if (next[key] === undefined) delete next[key];
      const data: OperatorStateData = { filters: { ...this.data.filters, [name]: next } };
      await this.backend.save(data);
      this.data = data;
    });
    this.writeChain = step;
    return step.then(() => {
      for (const listener of this.listeners) listener();
    });
  }

  onChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function parseState(raw: unknown): OperatorStateData {
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
    const t = v.targets as { clusters?: unknown; nodes?: unknown } | undefined;
    if (t && typeof t === "object") {
      const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((e): e is string => typeof e === "string") : []);
      choice.targets = { clusters: strings(t.clusters), nodes: strings(t.nodes) };
    }
    filters[name] = choice;
  }
  return { filters };
}
