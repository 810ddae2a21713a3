// Whether every connected Envoy took a step of a routes rollout (routes-source.ts), read from
// what Envoys ACKed (ClientRegistry) against what the snapshot cache serves them.
import { setTimeout as delay } from "node:timers/promises";
import net from "node:net";
import type { SnapshotCache } from "../xds/cache.ts";
import type { ClientRegistry, ClientStatus } from "../xds/client-status.ts";
import { CLUSTER, ENDPOINT, ROUTE } from "../xds/type-urls.ts";
import type { RolloutStep, Settle } from "./routes-source.ts";

const POLL_MS = 25;
/** An Envoy that does not ACK within this long (stuck, NACKing) does not hold the rollout up forever. */
const DEFAULT_TIMEOUT_MS = 10_000;

export function envoysSettled(clients: ClientRegistry, cache: SnapshotCache, timeoutMs = DEFAULT_TIMEOUT_MS): Settle {
  return async (step) => {
    const deadline = Date.now() + timeoutMs;
    // Let the streams push the snapshot just published before reading what they were sent.
    await new Promise((resolve) => setImmediate(resolve));
    for (;;) {
      if (allTook(clients.list(), cache, step)) return true;
      if (Date.now() >= deadline) return false;
      await delay(POLL_MS);
    }
  };
}

/** One Envoy may hold several streams (per-type services: one per type, one per EDS cluster). */
function allTook(streams: readonly ClientStatus[], cache: SnapshotCache, step: RolloutStep): boolean {
  const byNode = new Map<string, ClientStatus[]>();
  for (const s of streams) {
    const key = `${s.nodeCluster}\n${s.nodeId}`;
    byNode.set(key, [...(byNode.get(key) ?? []), s]);
  }
  for (const node of byNode.values()) {
    const served = cache.getFor({ id: node[0]!.nodeId, cluster: node[0]!.nodeCluster });
    const statuses = (typeUrl: string) => node.flatMap((s) => (s.types.has(typeUrl) ? [s.types.get(typeUrl)!] : []));
    const ackedCurrent = (typeUrl: string): boolean =>
      statuses(typeUrl).every((t) => t.ackedVersion !== undefined && t.ackedVersion === served?.types.get(typeUrl)?.version);
    if (step.kind === "routes") {
      if (!ackedCurrent(ROUTE)) return false;
      continue;
    }
    // An Envoy that takes no clusters from us (ECDS-only) has nothing to warm.
    if (statuses(CLUSTER).length === 0) continue;
    if (!ackedCurrent(CLUSTER)) return false;
    // A new EDS cluster is warm once Envoy ACKed a response carrying its endpoints. (A DNS one
    // warms on its first resolution, which Envoy does not report: not waited for.)
    const eds = statuses(ENDPOINT);
    for (const u of step.added) {
      if (net.isIP(u.endpoints[0]!.host) === 0) continue;
      const want = served?.types.get(ENDPOINT)?.resources.get(u.name)?.version;
      if (want === undefined || !eds.some((t) => t.ackedResources?.[u.name] === want)) return false;
    }
  }
  return true;
}
