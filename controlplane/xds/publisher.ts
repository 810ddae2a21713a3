import { effectiveFilters, type EffectiveFilter } from "../registry/effective.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import { targetsNodes, type OperatorState } from "../state/operator-state.ts";
import { DEFAULT_GROUP, type NodeKey, type SnapshotCache } from "./cache.ts";
import { resourceInputs, type NetworkInputs, type RoutesFeed } from "./inputs.ts";
import { buildResources } from "./resources.ts";
import { encodeSnapshot, type Snapshot } from "./snapshot.ts";

/**
 * Prefix of the groups of ECDS-only Envoys (docs/ecds-only.md): they get snapshots of their own,
 * in which a disabled filter is a native no-op. ":" is in no filter name.
 */
const ECDS_ONLY_PREFIX = "ecds-only:";

/**
 * Node-targeted filters a node runs; the group key is their sorted names ("" = none = default).
 * Only clusters/nodes group Envoys: routes/hosts targets are RDS switches inside every group.
 * ECDS-only Envoys get groups of their own, prefixed.
 */
function groupKey(targeted: readonly EffectiveFilter[], node: NodeKey): string {
  return (node.ecdsOnly ? ECDS_ONLY_PREFIX : "") + targeted
    .filter((f) => f.targets!.clusters.includes(node.cluster) || f.targets!.nodes.includes(node.id))
    .map((f) => f.name)
    .sort()
    .join(",");
}

/**
 * Turns (registry, state) into the cache's snapshots whenever either changes: the one place
 * where data crosses from "what we have" to "what Envoy gets". Untargeted filters go to every
 * Envoy; a targeted one only to Envoys whose node cluster or id it names, so Envoys are grouped
 * by the set of targeted filters they run, and a group's snapshot is built when first needed.
 * Until `start()` (the first full build of the filters dir) nothing is published, so a
 * restarted control plane never hands a reconnecting Envoy a half-built snapshot.
 */
export class SnapshotPublisher {
  private started = false;

  constructor(
    private readonly net: NetworkInputs,
    private readonly registry: FilterRegistry,
    private readonly state: OperatorState,
    private readonly cache: SnapshotCache,
    private readonly onPublished: (changedTypes: string[]) => void = () => undefined,
    /** The routes file, when there is one (a change republishes: RDS/CDS/EDS only). */
    private readonly routes?: RoutesFeed,
  ) {
    registry.onChange(() => this.publish());
    state.onChange(() => this.publish());
    routes?.onChange(() => this.publish());
  }

  start(): void {
    this.started = true;
    this.publish();
  }

  private publish(): void {
    if (!this.started) return;
    const filters = effectiveFilters(this.registry, this.state);
    const targeted = filters.filter((f) => targetsNodes(f.targets));
    // Read once: every group's snapshot of this publish renders the same routes.
    const net = this.routes ? { ...this.net, routes: this.routes.current() } : this.net;
    const build = (group: string, previous?: Snapshot): Snapshot => {
      const ecdsOnly = group.startsWith(ECDS_ONLY_PREFIX);
      const key = ecdsOnly ? group.slice(ECDS_ONLY_PREFIX.length) : group;
      const names = new Set(key === DEFAULT_GROUP ? [] : key.split(","));
      const chosen = filters.filter((f) => !targetsNodes(f.targets) || names.has(f.name));
      return encodeSnapshot(buildResources({ ...resourceInputs(net, chosen), ecdsOnly }), previous);
    };
    this.cache.setPolicy({ groupOf: (node) => groupKey(targeted, node), build: (group) => build(group, this.cache.get()) });
    const next = new Map<string, Snapshot>();
    for (const group of new Set([DEFAULT_GROUP, ...this.cache.groups()])) {
      next.set(group, build(group, this.cache.groups().includes(group) ? this.cache.get(group) : undefined));
    }
    this.cache.publish(next, (changed) => {
      if (changed.length > 0) this.onPublished(changed);
    });
  }
}
