// Every replica follows the shared configuration in etcd (`config/`: operator state and filter
// records) with one watch, and applies each change to its own memory; its snapshots follow, so
// replicas serve the same resources under the same versions. Each change carries its etcd
// revision, and memory ignores one older than what it holds, so a late event never undoes a
// newer write. A watch that loses etcd resumes by itself; on reconnecting, the whole
// configuration is read again (events missed during an outage, or compacted away, are covered).

import type { Logger } from "pino";
import type { IKeyValue, Watcher } from "etcd3";
import type { SavedState } from "../state/operator-state.ts";
import { revisionOf, type EtcdConnection } from "./etcd-connection.ts";
import { nameOfRecordKey, parseRecordKv, RECORDS_PREFIX } from "./etcd-records.ts";
import { parseStored, STATE_KEY } from "./etcd-state.ts";
import type { FilterRecord } from "./filter-records.ts";

export interface SharedConfigListener {
  state(saved: SavedState): void;
  record(record: FilterRecord, revision: number): void;
  recordRemoved(name: string, revision: number): void;
  /** Everything, as read at `revision` after a reconnect. */
  resync(all: { state: SavedState | undefined; records: FilterRecord[]; revision: number }): void;
}

export interface SharedConfigWatch {
  close(): Promise<void>;
}

const CONFIG_PREFIX = "config/";

/** Starts following changes after `fromRevision` (the revision the start-up load read at). */
export async function watchSharedConfig(etcd: EtcdConnection, fromRevision: number, listener: SharedConfigListener, log: Logger): Promise<SharedConfigWatch> {
  let closed = false;
  let lost = false;
  const watcher: Watcher = await etcd.ns.watch().prefix(CONFIG_PREFIX).startRevision(String(fromRevision + 1)).create();

  const onPut = (kv: IKeyValue): void => {
    const revision = revisionOf(kv.mod_revision);
    const key = kv.key.toString("utf8");
    if (key === STATE_KEY) {
      try {
        listener.state({ data: parseStored(kv.value), revision });
      } catch (err) {
        log.error({ key, err: (err as Error).message }, "shared operator state ignored");
      }
      return;
    }
    if (!key.startsWith(RECORDS_PREFIX)) return;
    const record = parseRecordKv(kv.key, kv.value);
    if (typeof record === "string") log.error({ key, problem: record }, "shared filter record ignored");
    else listener.record(record, revision);
  };
  const resync = async (): Promise<void> => {
    const res = await etcd.ns.getAll().prefix(CONFIG_PREFIX).exec();
    let state: SavedState | undefined;
    const records: FilterRecord[] = [];
    for (const kv of res.kvs) {
      if (kv.key.toString("utf8") === STATE_KEY) state = { data: parseStored(kv.value), revision: revisionOf(kv.mod_revision) };
      else {
        const record = parseRecordKv(kv.key, kv.value);
        if (typeof record !== "string") records.push(record);
      }
    }
    listener.resync({ state, records, revision: revisionOf(res.header.revision) });
  };

  watcher.on("put", onPut);
  watcher.on("delete", (kv) => {
    const name = nameOfRecordKey(kv.key);
    if (name !== undefined) listener.recordRemoved(name, revisionOf(kv.mod_revision));
  });
  watcher.on("disconnected", (err) => {
    if (closed || lost) return;
    lost = true;
    log.warn({ err: err.message }, "lost the etcd watch; serving the last configuration, retrying");
  });
  watcher.on("connected", () => {
    if (closed || !lost) return;
    lost = false;
    log.info("etcd watch resumed; reading the whole configuration again");
    resync().catch((err: unknown) => {
      log.error({ err: (err as Error).message }, "resync after reconnect failed; the watch continues");
    });
  });
  watcher.on("error", (err) => log.error({ err: err.message }, "etcd watch error"));

  return {
    async close() {
      closed = true;
      await watcher.cancel().catch(() => undefined);
    },
  };
}
