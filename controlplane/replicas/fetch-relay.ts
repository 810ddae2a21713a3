// Module downloads, told across replicas. An Envoy on replica C may fetch a module from replica
// B's module server (the module cluster lists every replica), but C's xDS stream is what waits
// for that download (xds/ecds-delivery.ts: the re-send after a code-cache miss). So a module
// server that serves a node it has no stream for relays the download through etcd, and every
// replica feeds what it hears into its own FetchTracker, which keeps only nodes it streams to.
//
// Bounded: a node id another replica announces as connected (the replica directory) is always
// relayed; any other (an announcement not yet written, e.g. just after an etcd outage, or a
// `?node=` made up by anyone reaching the module server) only within UNKNOWN_PER_S relays a
// second. A relayed record lives on a lease of RELAY_TTL_S.

import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Lease, Watcher } from "etcd3";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { EtcdConnection } from "../store/etcd-connection.ts";
import { REPLICAS_PREFIX, type ReplicaInfo } from "./replica-directory.ts";

const FETCHES_PREFIX = "fetches/";
const RELAY_TTL_S = 30;
/** Relays per second (and burst) for node ids no replica announces. */
const UNKNOWN_PER_S = 20;

interface Relayed {
  from: string;
  node: string;
  sha256: string;
  event: "started" | "completed";
  finished: boolean;
}

/** What the module server reports downloads to (a FetchTracker, or this relay in front of one). */
export interface FetchSink {
  started(nodeId: string, sha256: string): void;
  completed(nodeId: string, sha256: string, finished?: boolean): void;
}

export class FetchRelay implements FetchSink {
  /** Node ids other replicas stream to, by replica. */
  private readonly remote = new Map<string, Set<string>>();
  private lease: Lease | undefined;
  /** Relayed writes go one at a time: a download's "completed" must never overtake its "started". */
  private chain: Promise<unknown> = Promise.resolve();
  private watchers: Watcher[] = [];
  private unknownBudget = UNKNOWN_PER_S;
  private budgetAt = Date.now();

  constructor(
    private readonly etcd: EtcdConnection,
    private readonly replicaId: string,
    private readonly tracker: FetchTracker,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const replicas = await this.etcd.ns.watch().prefix(REPLICAS_PREFIX).create();
    replicas.on("put", (kv) => {
      try {
        const info = JSON.parse(kv.value.toString("utf8")) as ReplicaInfo;
        if (info.id !== this.replicaId) this.remote.set(info.id, new Set(info.envoys));
      } catch {
        // a damaged announcement names no node
      }
    });
    replicas.on("delete", (kv) => this.remote.delete(kv.key.toString("utf8").slice(REPLICAS_PREFIX.length)));
    const fetches = await this.etcd.ns.watch().prefix(FETCHES_PREFIX).create();
    fetches.on("put", (kv) => {
      let r: Relayed;
      try {
        r = JSON.parse(kv.value.toString("utf8")) as Relayed;
      } catch {
        return;
      }
      if (r.from === this.replicaId || typeof r.node !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) return;
      // The tracker keeps only nodes with a stream here; others' downloads are dropped there.
      if (r.event === "started") this.tracker.started(r.node, r.sha256);
      else this.tracker.completed(r.node, r.sha256, r.finished === true);
    });
    this.watchers = [replicas, fetches];
    // The announcements already there (the watch reports changes only).
    const now = await this.etcd.ns.getAll().prefix(REPLICAS_PREFIX).strings().catch(() => ({}));
    for (const text of Object.values(now)) {
      try {
        const info = JSON.parse(text) as ReplicaInfo;
        if (info.id !== this.replicaId) this.remote.set(info.id, new Set(info.envoys));
      } catch {
        // ignored, as above
      }
    }
  }

  started(nodeId: string, sha256: string): void {
    this.tracker.started(nodeId, sha256);
    this.relay({ from: this.replicaId, node: nodeId, sha256, event: "started", finished: false });
  }

  completed(nodeId: string, sha256: string, finished = true): void {
    this.tracker.completed(nodeId, sha256, finished);
    this.relay({ from: this.replicaId, node: nodeId, sha256, event: "completed", finished });
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.watchers.map((w) => w.cancel()));
    await this.lease?.revoke().catch(() => undefined);
  }

  private relay(r: Relayed): void {
    if (!this.isRemoteNode(r.node)) return;
    if (!this.lease) {
      const lease = this.etcd.ns.lease(RELAY_TTL_S);
      lease.on("lost", () => {
        if (this.lease === lease) this.lease = undefined;
      });
      this.lease = lease;
    }
    const lease = this.lease;
    const key = `${FETCHES_PREFIX}${r.sha256}/${createHash("sha256").update(r.node).digest("hex").slice(0, 32)}`;
    this.chain = this.chain.then(() => lease.put(key).value(JSON.stringify(r)).exec()).catch((err: unknown) => {
      // etcd down: that Envoy's NACK then stands after the cache-miss grace (recorded, visible).
      this.log.warn({ node: r.node, sha256: r.sha256, err: (err as Error).message }, "download not relayed to the other replicas");
    });
  }

  private isRemoteNode(node: string): boolean {
    if (node === "" || this.tracker.tracks(node)) return false;
    for (const nodes of this.remote.values()) if (nodes.has(node)) return true;
    // Not announced (yet): relayed within the budget, refilled continuously.
    const now = Date.now();
    this.unknownBudget = Math.min(UNKNOWN_PER_S, this.unknownBudget + ((now - this.budgetAt) / 1000) * UNKNOWN_PER_S);
    this.budgetAt = now;
    if (this.unknownBudget < 1) return false;
    this.unknownBudget -= 1;
    return true;
  }
}
