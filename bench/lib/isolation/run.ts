/**
 * Runs the isolation scenarios in order against one stack and returns one row per
 * (scenario, fail policy). A scenario that throws becomes a row saying so; the run goes on.
 */
import type { ScenarioContext } from "./context.ts";
import { runCapability } from "./scenario-capability.ts";
import { runAutoDisable } from "./scenario-auto.ts";
import { runAbortAtStart, runAbortConfigure } from "./scenario-configure.ts";
import { runModuleRefusals } from "./scenario-module.ts";
import { runShaNewFilter, runShaUpdate } from "./scenario-sha.ts";
import { runSpin } from "./scenario-spin.ts";
import { runSpinWatchdog } from "./scenario-watchdog.ts";
import { ABORT_REQUEST, MEMORY_GROW, runTrap } from "./scenario-trap.ts";
import type { FailPolicy, ScenarioResult } from "./types.ts";

export interface Scenario {
  id: string;
  /** Runs once per fail policy, or once when the policy does not matter. */
  perPolicy: boolean;
  /** Runs only when the control plane offers this fail policy. */
  needs?: FailPolicy;
  run(ctx: ScenarioContext, policy: FailPolicy): Promise<ScenarioResult | ScenarioResult[]>;
}

export const SCENARIOS: readonly Scenario[] = [
  { id: "abort-request", perPolicy: true, run: (ctx, p) => runTrap(ctx, ABORT_REQUEST, p) },
  { id: "auto-disable", perPolicy: false, needs: "reload", run: (ctx) => runAutoDisable(ctx) },
  // Refused before push (the pre-flight): the fail policy never comes into play.
  { id: "abort-configure", perPolicy: false, run: (ctx, p) => runAbortConfigure(ctx, p) },
  { id: "abort-at-start", perPolicy: false, run: (ctx) => runAbortAtStart(ctx) },
  { id: "memory-grow", perPolicy: true, run: (ctx, p) => runTrap(ctx, MEMORY_GROW, p) },
  { id: "spin", perPolicy: false, run: (ctx) => runSpin(ctx) },
  { id: "spin-watchdog", perPolicy: false, run: (ctx) => runSpinWatchdog(ctx) },
  { id: "capability", perPolicy: false, run: (ctx) => runCapability(ctx) },
  { id: "module-refused", perPolicy: false, run: (ctx) => runModuleRefusals(ctx) },
  { id: "sha-new", perPolicy: false, run: (ctx) => runShaNewFilter(ctx) },
  { id: "sha-update", perPolicy: true, run: (ctx, p) => runShaUpdate(ctx, p) },
];

export async function runScenarios(
  ctx: ScenarioContext,
  opts: { only?: readonly string[]; policies: readonly FailPolicy[]; log?: (line: string) => void },
): Promise<ScenarioResult[]> {
  const rows: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) {
    if (opts.only && opts.only.length > 0 && !opts.only.includes(scenario.id)) continue;
    if (scenario.needs !== undefined && !opts.policies.includes(scenario.needs)) {
      opts.log?.(`scenario ${scenario.id} skipped: needs fail policy ${scenario.needs}`);
      continue;
    }
    for (const policy of scenario.perPolicy ? opts.policies : (["closed"] as const)) {
      const label = scenario.perPolicy ? `${scenario.id} (${policy})` : scenario.id;
      opts.log?.(`scenario ${label} ...`);
      const t0 = performance.now();
      try {
        const out = await scenario.run(ctx, policy);
        rows.push(...(Array.isArray(out) ? out : [out]));
      } catch (err) {
        rows.push(failedRow(scenario.id, policy, err));
      }
      opts.log?.(`scenario ${label} done in ${Math.round(performance.now() - t0)} ms`);
    }
  }
  return rows;
}

function failedRow(id: string, policy: FailPolicy, err: unknown): ScenarioResult {
  const message = err instanceof Error ? err.message : String(err);
  return {
    scenario: id, what: "(scenario failed to run)", failPolicy: policy, envoyAlive: false, readyDuring: "?",
    triggered: [], other: [], goodFilterUnaffected: false, controlPlane: "?", recovery: { action: "-", ms: null },
    notes: [`harness error: ${message.split("\n")[0]}`], harnessError: message,
  };
}
