// Operator state in etcd: one key, `config/state`, holding the same JSON the state file holds.
// Every change is a compare-and-swap on the key's mod revision, retried on the newer value, so
// two replicas changing state at once both land, in etcd's order, and every replica ends with the
// same data (each applies the key's latest revision, store/etcd-watch.ts).

import { parseState, type OperatorStateData, type SavedState, type StateBackend } from "../state/operator-state.ts";
import { StoreWriteError } from "./durable-file.ts";
import { revisionOf, type EtcdConnection } from "./etcd-connection.ts";

export const STATE_KEY = "config/state";

/** Conflicting writers retry; this many conflicts in a row means something is wrong. */
const MAX_ATTEMPTS = 32;

export class EtcdStateBackend implements StateBackend {
  constructor(private readonly etcd: EtcdConnection) {}

  async load(): Promise<SavedState | undefined> {
    const res = await this.etcd.call("cannot read operator state", (ns) => ns.get(STATE_KEY).exec());
    const kv = res.kvs[0];
    if (!kv) return undefined;
    return { data: parseStored(kv.value), revision: revisionOf(kv.mod_revision) };
  }

  async update(mutate: (latest: OperatorStateData) => OperatorStateData): Promise<SavedState> {
    return this.etcd.call("cannot save operator state", async (ns) => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const res = await ns.get(STATE_KEY).exec();
        const kv = res.kvs[0];
        const data = mutate(kv ? parseStored(kv.value) : { filters: {} });
        // mod_revision 0 = the key does not exist yet.
        const txn = await ns.if(STATE_KEY, "Mod", "==", kv ? kv.mod_revision : 0)
          .then(ns.put(STATE_KEY).value(JSON.stringify(data)))
          .commit();
        if (txn.succeeded) return { data, revision: revisionOf(txn.header.revision) };
      }
      throw new StoreWriteError(`operator state changed ${MAX_ATTEMPTS} times while this write retried`, "ETCD_CONFLICT");
    });
  }
}

export function parseStored(value: Buffer): OperatorStateData {
  try {
    return parseState(JSON.parse(value.toString("utf8")));
  } catch (err) {
    throw new Error(`${STATE_KEY} in etcd is invalid: ${(err as Error).message}`);
  }
}
