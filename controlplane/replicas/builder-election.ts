// Which replica builds (CP_STORE=etcd): an etcd election whose candidates hold a lease. The
// elected replica watches the filters folder and compiles; the others serve what it stores. If
// the builder dies, its lease expires after the TTL and the next candidate is elected; if it loses
// etcd for longer than the TTL, its lease is lost too and it stops building (another replica,
// still reaching etcd, takes over) and campaigns again once etcd answers.

import type { Logger } from "pino";
import type { Campaign } from "etcd3";
import type { EtcdConnection } from "../store/etcd-connection.ts";

export interface BuilderRole {
  /** This replica is the builder now. */
  elected(): void;
  /** It no longer is (its lease was lost): stop building. */
  deposed(reason: string): void;
}

const RETRY_MS = 1000;

export class BuilderElection {
  private campaign: Campaign | undefined;
  private builder = false;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private loggedAt = 0;

  constructor(private readonly etcd: EtcdConnection, private readonly replicaId: string, private readonly ttlS: number, private readonly log: Logger) {}

  get isBuilder(): boolean {
    return this.builder;
  }

  start(role: BuilderRole): void {
    if (this.stopped) return;
    const campaign = this.etcd.ns.election("election/builder", this.ttlS).campaign(this.replicaId);
    this.campaign = campaign;
    campaign.on("elected", () => {
      if (this.campaign !== campaign || this.stopped) return;
      this.loggedAt = 0;
      this.builder = true;
      this.log.info({ replica: this.replicaId }, "elected builder: this replica watches and builds the filters");
      role.elected();
    });
    campaign.on("error", (err: Error) => {
      if (this.campaign !== campaign || this.stopped) return;
      this.campaign = undefined;
      const was = this.builder;
      this.builder = false;
      // Not once per retry: at most once a minute while etcd stays away.
      const now = Date.now();
      if (was || now - this.loggedAt > 60_000) {
        this.loggedAt = now;
        this.log.warn({ err: err.message, wasBuilder: was }, "builder campaign ended (etcd lease lost); campaigning again");
      }
      if (was) role.deposed(err.message);
      campaign.resign().catch(() => undefined);
      this.retry = setTimeout(() => this.start(role), RETRY_MS);
      this.retry.unref();
    });
  }

  /** Resigns (a clean shutdown hands the role over at once instead of after the TTL). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const campaign = this.campaign;
    this.campaign = undefined;
    this.builder = false;
    await campaign?.resign().catch(() => undefined);
  }
}
