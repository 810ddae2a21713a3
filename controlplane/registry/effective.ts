import type { OperatorState } from "../state/operator-state.ts";
import type { BuildStatus, FilterRegistry } from "./filter-registry.ts";

export const DEFAULT_ORDER = 100;

/** A filter as Envoy should run it: build output merged with manifest defaults and operator choices. */
export interface EffectiveFilter {
  name: string;
  enabled: boolean;
  order: number;
  configuration?: string;
  status: BuildStatus;
  error?: string;
  sha256?: string;
  rootId?: string;
  /** When the module Envoy runs was built, and how long that build took. */
  builtAt?: string;
  buildMs?: number;
}

/** Operator choice wins over the manifest, the manifest over the defaults; sorted by (order, name). */
export function effectiveFilters(registry: FilterRegistry, state: OperatorState): EffectiveFilter[] {
  return registry.list()
    .map((entry) => {
      const choice = state.choice(entry.name);
      const f: EffectiveFilter = {
        name: entry.name,
        enabled: choice.enabled ?? entry.defaults.enabled ?? true,
        order: choice.order ?? entry.defaults.order ?? DEFAULT_ORDER,
        status: entry.status,
      };
      const configuration = choice.configuration ?? entry.defaults.configuration;
      if (configuration !== undefined) f.configuration = configuration;
      if (entry.error !== undefined) f.error = entry.error;
      if (entry.module) {
        f.sha256 = entry.module.sha256;
        f.rootId = entry.module.rootId;
        f.builtAt = entry.module.builtAt;
        f.buildMs = entry.module.buildMs;
      }
      return f;
    })
    .sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
}
