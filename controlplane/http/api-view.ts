// JSON shapes the admin API answers with, shared by the server (routes), its clients (the
// dashboard, the CLI) and the tests. Type-only: nothing here runs, so the browser bundle can
// import it too.
import type { ModuleCapabilities } from "../compile/capabilities.ts";
import type { FilterHealth } from "../health/monitor.ts";
import type { BuildStatus } from "../registry/filter-registry.ts";
import type { FailPolicy, Targets } from "../state/operator-state.ts";

/** One entry of GET /api/filters (and the base of GET /api/filters/:name). */
export interface FilterView {
  name: string;
  enabled: boolean;
  order: number;
  sha256: string | null;
  status: BuildStatus;
  configuration: string | null;
  failPolicy: FailPolicy;
  /** clusters/nodes: which Envoys; routes/hosts: where in their route table. Null: everywhere. */
  targets: Targets | null;
  /** Who chose `targets`: an operator, or filter.json. */
  targetsFrom?: "operator" | "manifest";
  /** Route name -> the plugin configuration the filter runs with on that route. */
  routeConfigurations?: Record<string, string>;
  pinnedSha256: string | null;
  error?: string;
  builtAt?: string;
  buildMs?: number;
  size?: number;
  capabilities?: ModuleCapabilities;
  /** Present when the health monitor runs (controlplane/health). */
  health?: FilterHealth;
}
