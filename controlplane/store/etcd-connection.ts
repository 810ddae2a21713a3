// One etcd client for a replica (CP_STORE=etcd://...): the key prefix, per-call deadlines, and
// the error every failed call becomes. A call that fails (etcd down, no quorum, a timeout) is a
// StoreWriteError: the admin API answers 503 with its reason and nothing changed. Reads for
// serving never come here: replicas serve from memory, so an etcd outage stops writes only.

import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { Etcd3, type Namespace } from "etcd3";
import { StoreWriteError } from "./durable-file.ts";
import type { EtcdTarget } from "./etcd-url.ts";

export interface EtcdOptions {
  /** Deadline of one unary call (a write, a read at start-up); default 3 s. */
  callTimeoutMs?: number;
}

/** The failure of an etcd call, as the admin API reports it (503, nothing changed). */
export function etcdFailure(what: string, err: unknown): StoreWriteError {
  if (err instanceof StoreWriteError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new StoreWriteError(`${what}: the shared store (etcd) did not answer: ${reason}`, "ETCD_UNAVAILABLE");
}

export class EtcdConnection {
  readonly client: Etcd3;
  /** Everything this deployment keeps, under the URL's prefix. */
  readonly ns: Namespace;

  constructor(readonly target: EtcdTarget, opts: EtcdOptions = {}) {
    const timeout = opts.callTimeoutMs ?? 3000;
    this.client = new Etcd3({
      hosts: target.hosts,
      dialTimeout: timeout,
      // Streams (watch, lease keepalive) live long; every other call gets a deadline, so an
      // unreachable etcd answers an admin write with a 503 in seconds, not a hang.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // The default watch backoff grows to 30 s: after an outage replicas would hear changes
      // that late. 2 s bounds the catch-up.
      // (etcd3 types the option as a backoff but calls .next() on it first, as on cockatiel's
      // own default, a factory: hence the cast.)
      faultHandling: { watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown> },
    });
    this.ns = this.client.namespace(target.prefix);
  }

  /** Runs a call; a failure becomes a StoreWriteError naming `what`. */
  async call<T>(what: string, fn: (ns: Namespace) => Promise<T>): Promise<T> {
    try {
      return await fn(this.ns);
    } catch (err) {
      throw etcdFailure(what, err);
    }
  }

  close(): void {
    this.client.close();
  }
}

/** etcd revisions are int64 decimal strings; this deployment's stay far below 2^53. */
export function revisionOf(value: string | number | undefined | null): number {
  const n = Number(value ?? 0);
  return Number.isSafeInteger(n) ? n : 0;
}
