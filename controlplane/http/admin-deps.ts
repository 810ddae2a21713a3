import type { EventBus } from "../events/bus.ts";
import type { HealthReader } from "../health/monitor.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { ReplicaInfo } from "../replicas/replica-directory.ts";
import type { RoutesView } from "../routes/routes-source.ts";
import type { OperatorState } from "../state/operator-state.ts";
import type { ClientRegistry } from "../xds/client-status.ts";
import type { EncodedResource, Snapshot } from "../xds/snapshot.ts";

/** What the admin API reads; it mutates only operator state (and, through it, snapshots). */
export interface AdminDeps {
  registry: FilterRegistry;
  state: OperatorState;
  clients: ClientRegistry;
  /** Live events (build, state, xDS), for the SSE stream and metrics. */
  events: EventBus;
  /** The snapshot Envoys are served (undefined before the first publish). */
  snapshot: () => Snapshot | undefined;
  /** A served resource by version, current or recent (to tell which module an Envoy ACKed). */
  resourceAt: (typeUrl: string, name: string, version: string) => EncodedResource | undefined;
  /** True once the first scan and build of the filters dir finished. */
  ready: () => boolean;
  /** Runtime health of filters and which Envoys report stats (controlplane/health); absent: no `health` in views. */
  health?: HealthReader;
  /** This replica: its id (CP_REPLICA_ID), whether it builds, and (etcd) every replica's announcement. */
  replica?: { id: string; builder: () => boolean; directory?: () => Promise<ReplicaInfo[]> };
  /** The routes in force, the routes file and its last error (GET /api/routes); absent: no such route. */
  routes?: () => RoutesView;
  /** Largest module an upload may bring (CP_MAX_MODULE_BYTES); default 8 MiB. */
  maxModuleBytes?: number;
}
