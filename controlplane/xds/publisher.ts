import { effectiveFilters } from "../registry/effective.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { OperatorState } from "../state/operator-state.ts";
import type { SnapshotCache } from "./cache.ts";
import { resourceInputs, type NetworkInputs } from "./inputs.ts";
import { buildResources } from "./resources.ts";
import { encodeSnapshot } from "./snapshot.ts";

/**
 * Turns (registry, state) into the cache's snapshot whenever either changes: the one place
 * where data crosses from "what we have" to "what Envoy gets". Until `start()` (the first full
 * build of the filters dir) nothing is published, so a restarted control plane never hands a
 * reconnecting Envoy a half-built snapshot.
 */
export class SnapshotPublisher {
  private started = false;

  constructor(
    private readonly net: NetworkInputs,
    private readonly registry: FilterRegistry,
    private readonly state: OperatorState,
    private readonly cache: SnapshotCache,
    private readonly onPublished: (changedTypes: string[]) => void = () => undefined,
  ) {
    registry.onChange(() => this.publish());
    state.onChange(() => this.publish());
  }

  start(): void {
    this.started = true;
    this.publish();
  }

  private publish(): void {
    if (!this.started) return;
    const filters = effectiveFilters(this.registry, this.state);
    const snapshot = encodeSnapshot(buildResources(resourceInputs(this.net, filters)), this.cache.get());
    const changed = this.cache.set(snapshot);
    if (changed.length > 0) this.onPublished(changed);
  }
}
