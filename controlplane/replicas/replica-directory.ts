// Replicas announce themselves in etcd (`replicas/<id>`, bound to a lease, so a dead replica
// drops out after the TTL): their addresses, whether they build, and the Envoys connected to
// them. GET /api/replicas reads the directory, so any replica can say where each Envoy is.

import type { Logger } from "pino";
import type { Lease } from "etcd3";
import type { EtcdConnection } from "../store/etcd-connection.ts";

export interface ReplicaInfo {
  id: string;
  admin: string;
  xds: string;
  modules: string;
  builder: boolean;
  /** Node ids of the Envoys with a live xDS stream to this replica. */
  envoys: string[];
  startedAt: string;
}

export const REPLICAS_PREFIX = "replicas/";
const PREFIX = REPLICAS_PREFIX;
const MIN_INTERVAL_MS = 500;

export class ReplicaDirectory {
  private lease: Lease | undefined;
  private info: ReplicaInfo;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly etcd: EtcdConnection, info: Omit<ReplicaInfo, "startedAt">, private readonly ttlS: number, private readonly log: Logger) {
    this.info = { ...info, startedAt: new Date().toISOString() };
  }

  start(): void {
    this.renewLease();
    this.publish();
  }

  /** Changes what this replica announces (written at most every 0.5 s). */
  update(change: Partial<Pick<ReplicaInfo, "builder" | "envoys">>): void {
    this.info = { ...this.info, ...change };
    this.publish();
  }

  async list(): Promise<ReplicaInfo[]> {
    const all = await this.etcd.call("cannot read the replica directory", (ns) => ns.getAll().prefix(PREFIX).strings());
    return Object.values(all).flatMap((text) => {
      try {
        return [JSON.parse(text) as ReplicaInfo];
      } catch {
        return [];
      }
    }).sort((a, b) => a.id.localeCompare(b.id));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.lease?.revoke().catch(() => undefined);
  }

  private renewLease(): void {
    const lease = this.etcd.ns.lease(this.ttlS);
    this.lease = lease;
    lease.on("lost", (err) => {
      if (this.stopped || this.lease !== lease) return;
      this.log.warn({ err: err.message }, "replica directory lease lost; announcing again");
      setTimeout(() => {
        if (this.stopped) return;
        this.renewLease();
        this.publish();
      }, 1000).unref();
    });
  }

  private publish(): void {
    this.dirty = true;
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.dirty || this.stopped || !this.lease) return;
      this.dirty = false;
      this.lease.put(PREFIX + this.info.id).value(JSON.stringify(this.info)).exec().catch((err: unknown) => {
        // etcd is unreachable: announce again on the next change or lease renewal.
        this.dirty = true;
        this.log.debug({ err: (err as Error).message }, "replica directory not written");
      });
    }, MIN_INTERVAL_MS);
    this.timer.unref();
  }
}
