import fs from "node:fs/promises";
import path from "node:path";

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
 * Operator choices (enable/disable, and later order and configuration), persisted so they
 * survive a restart. Writes are atomic (temp file + rename): a crash mid-write leaves the old
 * file, never a truncated one.
 */
export class OperatorState {
  private data: OperatorStateData = { filters: {} };
  private readonly listeners = new Set<StateListener>();
  private writeChain: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  async load(): Promise<void> {
    await this.removeStaleTempFiles();
    let text: string;
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new Error(`cannot read state file ${this.file}: ${(err as Error).message}`);
    }
    try {
      this.data = parseState(JSON.parse(text));
    } catch (err) {
      throw new Error(`state file ${this.file} is invalid: ${(err as Error).message}`);
    }
  }

  /** A kill between a temp write and its rename leaves `<file>.<pid>.tmp`; they are garbage. */
  private async removeStaleTempFiles(): Promise<void> {
    const dir = path.dirname(this.file);
    const prefix = `${path.basename(this.file)}.`;
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      return;
    }
    await Promise.all(names.filter((n) => n.startsWith(prefix) && n.endsWith(".tmp")).map((n) => fs.rm(path.join(dir, n), { force: true })));
  }

  choice(name: string): FilterChoice {
    return this.data.filters[name] ?? {};
  }

  /**
   * Applies a change, persists it, then tells listeners (so a snapshot only follows saved state).
   * A field set to `undefined` in `change` is cleared.
   */
  async update(name: string, change: FilterChoice): Promise<void> {
    const next: FilterChoice = { ...this.choice(name), ...change };
    for (const key of Object.keys(next) as (keyof FilterChoice)[]) if (next[key] === undefined) delete next[key];
    this.data = { filters: { ...this.data.filters, [name]: next } };
    await this.persist();
    for (const listener of this.listeners) listener();
  }

  onChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private persist(): Promise<void> {
    const text = JSON.stringify(this.data, null, 2) + "\n";
    // Serialise writes so an older write can never rename over a newer one.
    this.writeChain = this.writeChain.catch(() => undefined).then(async () => {
      await fs.mkdir(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      await fs.writeFile(tmp, text);
      await fs.rename(tmp, this.file);
    });
    return this.writeChain;
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
