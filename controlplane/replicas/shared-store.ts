// CP_STORE=etcd://...: everything replicas share, opened in one place. Loaded only in that mode
// (main.ts imports it dynamically), so a single control plane never loads the etcd client.

import type { Logger } from "pino";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { OperatorState } from "../state/operator-state.ts";
import { EtcdConnection, revisionOf } from "../store/etcd-connection.ts";
import { EtcdModuleStore } from "../store/etcd-modules.ts";
import { EtcdFilterRecordStore } from "../store/etcd-records.ts";
import { EtcdStateBackend } from "../store/etcd-state.ts";
import type { EtcdTarget } from "../store/etcd-url.ts";
import { watchSharedConfig, type SharedConfigWatch } from "../store/etcd-watch.ts";
import { BuilderElection } from "./builder-election.ts";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import { FetchRelay } from "./fetch-relay.ts";
import { ReplicaDirectory, type ReplicaInfo } from "./replica-directory.ts";

export interface SharedStore {
  etcd: EtcdConnection;
  state: EtcdStateBackend;
  modules: EtcdModuleStore;
  records: EtcdFilterRecordStore;
  /** Store revision before anything was loaded: the watch replays from there. */
  loadedFrom: number;
  election: BuilderElection;
  directory: ReplicaDirectory;
  /** Relays module downloads between replicas (replicas/fetch-relay.ts), started. */
  fetchRelay(tracker: FetchTracker, log: Logger): Promise<FetchRelay>;
  /** Follows other replicas' changes into this replica's memory. */
  follow(state: OperatorState, registry: FilterRegistry, log: Logger, onResync?: () => void): Promise<SharedConfigWatch>;
  close(): Promise<void>;
}

/**
 * Connects and waits until etcd answers (a replica cannot know what to serve without it; it stays
 * not-ready meanwhile and says so every few seconds).
 */
export async function openSharedStore(
  target: EtcdTarget,
  replica: Omit<ReplicaInfo, "startedAt" | "builder" | "envoys">,
  leaseTtlS: number,
  log: Logger,
): Promise<SharedStore> {
  const etcd = new EtcdConnection(target);
  let loadedFrom = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await etcd.ns.get("config/state").exec();
      loadedFrom = revisionOf(res.header.revision);
      break;
    } catch (err) {
      if (attempt === 1 || attempt % 5 === 0) {
        log.warn({ hosts: target.hosts, attempt, err: (err as Error).message }, "etcd does not answer yet; waiting for it before serving");
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 200 * attempt)));
    }
  }
  log.info({ hosts: target.hosts, prefix: target.prefix, revision: loadedFrom }, "shared store: etcd reached");
  const directory = new ReplicaDirectory(etcd, { ...replica, builder: false, envoys: [] }, leaseTtlS, log);
  const election = new BuilderElection(etcd, replica.id, leaseTtlS, log);
  let relay: FetchRelay | undefined;
  return {
    etcd,
    state: new EtcdStateBackend(etcd),
    modules: new EtcdModuleStore(etcd),
    records: new EtcdFilterRecordStore(etcd),
    loadedFrom,
    election,
    directory,
    async fetchRelay(tracker, relayLog) {
      relay = new FetchRelay(etcd, replica.id, tracker, relayLog);
      await relay.start();
      return relay;
    },
    follow: (state, registry, followLog, onResync) => watchSharedConfig(etcd, loadedFrom, {
      state: (saved) => state.applyShared(saved),
      record: (record, revision) => {
        registry.applyShared(record, revision).then((problems) => {
          for (const problem of problems) followLog.warn({ filter: record.name, problem }, "shared record applied in part");
        }).catch((err: unknown) => followLog.error({ filter: record.name, err: (err as Error).message }, "shared record not applied"));
      },
      recordRemoved: (name, revision) => void registry.removeShared(name, revision),
      resync: ({ state: saved, records, revision }) => {
        if (saved) state.applyShared(saved);
        registry.resyncShared(records, revision).then(() => onResync?.())
          .catch((err: unknown) => followLog.error({ err: (err as Error).message }, "resync not applied"));
      },
    }, followLog),
    async close() {
      await Promise.allSettled([election.stop(), directory.stop(), relay?.stop()]);
      etcd.close();
    },
  };
}
