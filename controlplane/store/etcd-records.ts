// Filter records in etcd: `config/filters/<name>`, the same JSON a local record file holds, plus
// the latest build status and error (so every replica shows what the building replica saw).
// Writes are compare-and-swap on the record's mod revision, retried on the newer record.

import { isValidFilterName } from "../compile/manifest.ts";
import { StoreWriteError } from "./durable-file.ts";
import { revisionOf, type EtcdConnection } from "./etcd-connection.ts";
import { parseRecord, type FilterRecord, type FilterRecordStore, type LoadedRecords } from "./filter-records.ts";

export const RECORDS_PREFIX = "config/filters/";

const MAX_ATTEMPTS = 32;

export class EtcdFilterRecordStore implements FilterRecordStore {
  readonly shared = true;

  constructor(private readonly etcd: EtcdConnection) {}

  async load(): Promise<LoadedRecords> {
    const res = await this.etcd.call("cannot read filter records", (ns) => ns.getAll().prefix(RECORDS_PREFIX).exec());
    const records: FilterRecord[] = [];
    const problems: string[] = [];
    for (const kv of res.kvs) {
      const parsed = parseRecordKv(kv.key, kv.value);
      if (typeof parsed === "string") problems.push(parsed);
      else records.push(parsed);
    }
    return { records, problems, revision: revisionOf(res.header.revision) };
  }

  async update(name: string, mutate: (latest: FilterRecord | undefined) => FilterRecord): Promise<{ record: FilterRecord; revision: number }> {
    const key = recordKey(name);
    return this.etcd.call(`${name}: cannot save the filter record`, async (ns) => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        // (A single-key get returns the key with the namespace prefix: parse by name.)
        const kv = (await ns.get(key).exec()).kvs[0];
        const record = mutate(kv ? parseOrNone(name, kv.value) : undefined);
        const txn = await ns.if(key, "Mod", "==", kv ? kv.mod_revision : 0)
          .then(ns.put(key).value(JSON.stringify(record)))
          .commit();
        if (txn.succeeded) return { record, revision: revisionOf(txn.header.revision) };
      }
      throw new StoreWriteError(`${name}: the record changed ${MAX_ATTEMPTS} times while this write retried`, "ETCD_CONFLICT");
    });
  }

  async delete(name: string): Promise<number> {
    const res = await this.etcd.call(`${name}: cannot delete the filter record`, (ns) => ns.delete().key(recordKey(name)).exec());
    return revisionOf(res.header.revision);
  }
}

/** A damaged stored record reads as none: the update replaces it. */
function parseOrNone(name: string, value: Buffer): FilterRecord | undefined {
  try {
    return parseRecord(name, JSON.parse(value.toString("utf8")));
  } catch {
    return undefined;
  }
}

function recordKey(name: string): string {
  if (!isValidFilterName(name)) throw new Error(`filter records: invalid filter name ${JSON.stringify(name)}`);
  return RECORDS_PREFIX + name;
}

/** A record from etcd, or why it cannot be used (a damaged record loses that filter only). */
export function parseRecordKv(key: Buffer, value: Buffer): FilterRecord | string {
  const name = nameOfRecordKey(key);
  if (name === undefined) return `etcd key ${JSON.stringify(key.toString("utf8"))}: not a filter record`;
  try {
    return parseRecord(name, JSON.parse(value.toString("utf8")));
  } catch (err) {
    return `etcd record of ${name}: ${(err as Error).message}`;
  }
}

/** The filter name of a namespaced record key (`config/filters/<name>`), if it is one. */
export function nameOfRecordKey(key: Buffer): string | undefined {
  const text = key.toString("utf8");
  if (!text.startsWith(RECORDS_PREFIX)) return undefined;
  const name = text.slice(RECORDS_PREFIX.length);
  return isValidFilterName(name) ? name : undefined;
}
