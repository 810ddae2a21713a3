// What the registry must remember across restarts, per filter: its retained good modules (the
// current one last), the inputs of its last successful build, and the manifest defaults in force.
// Module bytes are not here: they are in the ModuleStore, named by sha256.

import fs from "node:fs/promises";
import path from "node:path";
import type { BuildStatus, FilterDefaults, GoodModule } from "../registry/filter-registry.ts";
import { isValidFilterName } from "../compile/manifest.ts";
import { removeFileDurably, removeTempFiles, writeFileDurably } from "./durable-file.ts";

export interface FilterRecord {
  name: string;
  /** Oldest first; the last one is the module the filter runs (unless pinned). */
  history: GoodModule[];
  /**
   * Build key of the filter folder's last successful build. A build with this key changes
   * nothing (the current module may since have been replaced by an upload, which then stays).
   */
  lastBuildKey?: string;
  defaults: FilterDefaults;
  /**
   * The latest build's status and error, kept by shared stores only (so every replica shows
   * what the building replica saw); a local store rebuilds them at start-up instead.
   */
  status?: BuildStatus;
  error?: string;
}

export interface LoadedRecords {
  records: FilterRecord[];
  problems: string[];
  /** Store revision the records were read at (every record is at or before it). */
  revision: number;
}

export interface FilterRecordStore {
  /** True when several replicas share the store (it then carries build status too). */
  readonly shared: boolean;
  load(): Promise<LoadedRecords>;
  /**
   * Saves `mutate(latest stored record)`; a shared store re-runs `mutate` when another replica
   * wrote the record in between. Resolves with what was saved and its revision. Throws
   * StoreWriteError; the previous record then stays.
   */
  update(name: string, mutate: (latest: FilterRecord | undefined) => FilterRecord): Promise<{ record: FilterRecord; revision: number }>;
  /** Resolves with the revision of the deletion. */
  delete(name: string): Promise<number>;
}

/** `<dir>/<name>.json`, one file per filter, each written crash-safely. */
export class DirFilterRecordStore implements FilterRecordStore {
  readonly shared = false;
  /** Local revisions: this process is the only writer, so a counter orders its writes. */
  private revision = 0;

  constructor(readonly dir: string) {}

  async load(): Promise<LoadedRecords> {
    await removeTempFiles(this.dir);
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { records: [], problems: [], revision: this.revision };
      throw new Error(`cannot read filter records in ${this.dir}: ${(err as Error).message}`);
    }
    const records: FilterRecord[] = [];
    const problems: string[] = [];
    for (const file of names.filter((n) => n.endsWith(".json")).sort()) {
      const name = file.slice(0, -".json".length);
      try {
        records.push(parseRecord(name, JSON.parse(await fs.readFile(path.join(this.dir, file), "utf8"))));
      } catch (err) {
        // One damaged record loses that filter's history, not the control plane.
        problems.push(`${path.join(this.dir, file)}: ${(err as Error).message}`);
      }
    }
    return { records, problems, revision: this.revision };
  }

  async update(name: string, mutate: (latest: FilterRecord | undefined) => FilterRecord): Promise<{ record: FilterRecord; revision: number }> {
    const record = mutate(await this.read(name));
    await writeFileDurably(this.file(name), JSON.stringify(record, null, 2) + "\n");
    return { record, revision: ++this.revision };
  }

  async delete(name: string): Promise<number> {
    await removeFileDurably(this.file(name));
    return ++this.revision;
  }

  /** The stored record; a missing or damaged one reads as none (the update replaces it). */
  private async read(name: string): Promise<FilterRecord | undefined> {
    try {
      return parseRecord(name, JSON.parse(await fs.readFile(this.file(name), "utf8")));
    } catch {
      return undefined;
    }
  }

  private file(name: string): string {
    if (!isValidFilterName(name)) throw new Error(`filter records: invalid filter name ${JSON.stringify(name)}`);
    return path.join(this.dir, `${name}.json`);
  }
}

/** Parses a stored record, keeping only well-formed modules (shared stores use it too). */
export function parseRecord(name: string, raw: unknown): FilterRecord {
  if (!isValidFilterName(name)) throw new Error("not a filter name");
  const r = raw as Partial<FilterRecord> | null;
  if (!r || typeof r !== "object" || r.name !== name || !Array.isArray(r.history)) throw new Error("expected {name, history: [...]}");
  const history = r.history.filter((m): m is GoodModule =>
    typeof m === "object" && m !== null && typeof m.sha256 === "string" && /^[0-9a-f]{64}$/.test(m.sha256) &&
    typeof m.rootId === "string" && typeof m.size === "number" && typeof m.builtAt === "string" &&
    (m.source === "build" || m.source === "upload"));
  const record: FilterRecord = { name, history, defaults: typeof r.defaults === "object" && r.defaults !== null ? r.defaults : {} };
  if (typeof r.lastBuildKey === "string") record.lastBuildKey = r.lastBuildKey;
  if (r.status === "ok" || r.status === "building" || r.status === "error") record.status = r.status;
  if (typeof r.error === "string") record.error = r.error;
  return record;
}
