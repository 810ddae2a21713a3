// What the registry must remember across restarts, per filter: its retained good modules (the
// current one last), the inputs of its last successful build, and the manifest defaults in force.
// Module bytes are not here: they are in the ModuleStore, named by sha256.

import fs from "node:fs/promises";
import path from "node:path";
import type { FilterDefaults, GoodModule } from "../registry/filter-registry.ts";
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
}

export interface FilterRecordStore {
  load(): Promise<{ records: FilterRecord[]; problems: string[] }>;
  /** Throws StoreWriteError; the previous record then stays. */
  save(record: FilterRecord): Promise<void>;
  delete(name: string): Promise<void>;
}

/** `<dir>/<name>.json`, one file per filter, each written crash-safely. */
export class DirFilterRecordStore implements FilterRecordStore {
  constructor(readonly dir: string) {}

  async load(): Promise<{ records: FilterRecord[]; problems: string[] }> {
    await removeTempFiles(this.dir);
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { records: [], problems: [] };
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
    return { records, problems };
  }

  async save(record: FilterRecord): Promise<void> {
    await writeFileDurably(this.file(record.name), JSON.stringify(record, null, 2) + "\n");
  }

  async delete(name: string): Promise<void> {
    await removeFileDurably(this.file(name));
  }

  private file(name: string): string {
    if (!isValidFilterName(name)) throw new Error(`filter records: invalid filter name ${JSON.stringify(name)}`);
    return path.join(this.dir, `${name}.json`);
  }
}

function parseRecord(name: string, raw: unknown): FilterRecord {
  if (!isValidFilterName(name)) throw new Error("not a filter name");
  const r = raw as Partial<FilterRecord> | null;
  if (!r || typeof r !== "object" || r.name !== name || !Array.isArray(r.history)) throw new Error("expected {name, history: [...]}");
  const history = r.history.filter((m): m is GoodModule =>
    typeof m === "object" && m !== null && typeof m.sha256 === "string" && /^[0-9a-f]{64}$/.test(m.sha256) &&
    typeof m.rootId === "string" && typeof m.size === "number" && typeof m.builtAt === "string" &&
    (m.source === "build" || m.source === "upload"));
  const record: FilterRecord = { name, history, defaults: typeof r.defaults === "object" && r.defaults !== null ? r.defaults : {} };
  if (typeof r.lastBuildKey === "string") record.lastBuildKey = r.lastBuildKey;
  return record;
}
