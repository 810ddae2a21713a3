import { targetsNodes, targetsRoutes, type FailPolicy, type OperatorState, type Targets } from "../state/operator-state.ts";
import type { ModuleCapabilities } from "../compile/capabilities.ts";
import type { BuildStatus, FilterRegistry } from "./filter-registry.ts";

export const DEFAULT_ORDER = 100;
/**
 * Reload: like closed, a failed filter answers 503 and is never skipped, but Envoy rebuilds a
 * crashed VM (closed leaves it failed for every later request) and counts the crash per plugin,
 * which is what lets the control plane see it (controlplane/health/).
 */
export const DEFAULT_FAIL_POLICY: FailPolicy = "reload";

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
  size?: number;
  failPolicy: FailPolicy;
  /** Undefined: every Envoy runs it, on every route. Set: at least one of its lists is non-empty. */
  targets?: Targets;
  /** Where the targets came from (the operator's choice wins over filter.json's). */
  targetsFrom?: "operator" | "manifest";
  /** Route name -> the plugin configuration that replaces `configuration` on that route. */
  routeConfigurations?: Readonly<Record<string, string>>;
  /** Set while a rollback pins an older module (then sha256 is that module). */
  pinnedSha256?: string;
  /** What the running module is granted in Envoy, and what it imports without a grant. */
  capabilities?: ModuleCapabilities;
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
        failPolicy: choice.failPolicy ?? entry.defaults.failPolicy ?? DEFAULT_FAIL_POLICY,
      };
      // The operator's targets replace the manifest's as a whole (all lists empty: everywhere).
      const targets = choice.targets ?? entry.defaults.targets;
      if (targets && (targetsNodes(targets) || targetsRoutes(targets))) {
        f.targets = targets;
        f.targetsFrom = choice.targets ? "operator" : "manifest";
      }
      const routeConfigurations = choice.routeConfigurations;
      if (routeConfigurations && Object.keys(routeConfigurations).length > 0) f.routeConfigurations = routeConfigurations;
      const configuration = choice.configuration ?? entry.defaults.configuration;
      if (configuration !== undefined) f.configuration = configuration;
      if (entry.error !== undefined) f.error = entry.error;
      // A pin selects a retained older module; if it has been evicted the pin is moot.
      const pinned = choice.pinnedSha256 ? registry.historyOf(entry.name).find((m) => m.sha256 === choice.pinnedSha256) : undefined;
      const module = pinned ?? entry.module;
      if (pinned) f.pinnedSha256 = pinned.sha256;
      if (module) {
        f.sha256 = module.sha256;
        f.rootId = module.rootId;
        f.builtAt = module.builtAt;
        f.buildMs = module.buildMs;
        f.size = module.size;
        if (module.capabilities) f.capabilities = module.capabilities;
      }
      return f;
    })
    .sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
}
