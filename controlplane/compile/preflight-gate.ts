// The pre-flight gate: nothing reaches Envoy -- a built module, an uploaded one, a configuration
// change, a rollback or unpin -- before the (module, root id, configuration) pair Envoy would then
// run has started in the in-process proxy-wasm host (preflight.ts): VM start, root context,
// onStart, onConfigure with the effective configuration (registry/effective.ts), and for a build
// the filter's filter.test.json cases. A refusal is a build error (builds) or a 400 (the admin
// API); either way nothing is saved or pushed and the last good module keeps serving.
//
// Per filter, checks and the changes they guard run one at a time, so a configuration change and
// a build of the same filter cannot each be checked against the other's old half. A build's
// commit happens outside the gate (main.ts), so a module that passed but is not committed yet is
// remembered ("pending") and a configuration change checks it too.
//
// Not pre-flighted: a build whose inputs did not change (nothing new is pushed: main.ts answers it
// before the gate), a pair that already passed (remembered by hash, in memory), the health
// monitor's automatic rollback (it responds to a failure; its target passed when it was built).

import { KeyedChain } from "../registry/keyed-chain.ts";
import { createHash } from "node:crypto";
import path from "node:path";
import type { Logger } from "pino";
import { readTestCases } from "../cli/check.ts";
import type { BuildResult } from "./builder.ts";
import type { TestCase } from "./preflight-cases.ts";
import { preflightModule, type PreflightOptions, type PreflightResult } from "./preflight.ts";
import type { FilterDefaults, FilterEntry, FilterRegistry, GoodModule } from "../registry/filter-registry.ts";
import type { FilterChoice, OperatorState } from "../state/operator-state.ts";

/** What Envoy runs for a filter: which module, under which root id, with which configuration. */
export interface Plugin {
  sha256: string;
  rootId: string;
  /** What onConfigure gets: "" when Envoy sends no configuration (an empty buffer either way). */
  configuration: string;
}

export interface CaseSet {
  /** filter.json's configuration: what a case without its own gets. */
  defaultConfiguration: string;
  list: TestCase[];
}

export type PreflightFn = (wasm: Uint8Array, opts: PreflightOptions) => Promise<PreflightResult>;

export type Verdict = { ok: true; ms: number; remembered: boolean } | { ok: false; error: string; ms: number };

/** The operator's configuration wins over the manifest's (registry/effective.ts). */
export function configurationOf(choice: FilterChoice, defaults: FilterDefaults): string {
  return choice.configuration ?? defaults.configuration ?? "";
}

/** `change` applied to `choice` as OperatorState.update applies it (an undefined field clears). */
export function applyChoice(choice: FilterChoice, change: FilterChoice): FilterChoice {
  const next: FilterChoice = { ...choice, ...change };
  for (const key of Object.keys(next) as (keyof FilterChoice)[]) if (next[key] === undefined) delete next[key];
  return next;
}

/**
 * The plugin Envoy runs for a filter under `choice`: the pinned module if it is still retained,
 * else the newest (as effectiveFilters picks it). Undefined: no module, nothing goes to Envoy.
 */
export function pluginOf(
  entry: Pick<FilterEntry, "module" | "defaults"> | undefined, history: readonly GoodModule[], choice: FilterChoice,
): Plugin | undefined {
  if (!entry) return undefined;
  const pinned = choice.pinnedSha256 ? history.find((m) => m.sha256 === choice.pinnedSha256) : undefined;
  const module = pinned ?? entry.module;
  if (!module) return undefined;
  return { sha256: module.sha256, rootId: module.rootId, configuration: configurationOf(choice, entry.defaults) };
}

export function samePlugin(a: Plugin | undefined, b: Plugin | undefined): boolean {
  return a !== undefined && b !== undefined && a.sha256 === b.sha256 && a.rootId === b.rootId && a.configuration === b.configuration;
}

/**
 * What an operator change makes Envoy run that it did not run before: the plugin after the change
 * (unless unchanged), and a built module that passed the gate but is not committed yet, which
 * will run with the new configuration once it is. Empty: nothing new reaches Envoy.
 */
export function pluginsToCheck(before: Plugin | undefined, after: Plugin | undefined, pending?: Omit<Plugin, "configuration">): Plugin[] {
  if (!after) return [];
  const out = samePlugin(before, after) ? [] : [after];
  if (pending && pending.sha256 !== after.sha256) {
    out.push({ sha256: pending.sha256, rootId: pending.rootId, configuration: after.configuration });
  }
  return out;
}

/** The key a passing verdict is remembered under: the plugin and, if any, the cases it ran. */
export function verdictKey(plugin: Plugin, cases?: CaseSet): string {
  const parts = [plugin.sha256, plugin.rootId, plugin.configuration, cases ? [cases.defaultConfiguration, cases.list] : null];
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex");
}

/** The message of a refusal: which filter, what was started and how, and the module's own reason. */
export function refusal(name: string, plugin: Plugin, error: string): string {
  if (error.startsWith("filter.test.json ")) return `${name}: refused before push: ${error}`;
  const configuration = plugin.configuration === ""
    ? "no configuration"
    : `configuration ${clip(JSON.stringify(plugin.configuration), 120)}`;
  return `${name}: refused before push: module ${plugin.sha256.slice(0, 12)} (root id ${JSON.stringify(plugin.rootId)}) ` +
    `started as Envoy would run it, with ${configuration}: ${error}`;
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** Verdict keys that passed, most recent last; bounded (a miss costs one more pre-flight). */
export class PassedSet {
  private readonly keys = new Map<string, true>();
  constructor(private readonly limit = 512) {}

  has(key: string): boolean {
    if (!this.keys.has(key)) return false;
    this.keys.delete(key);
    this.keys.set(key, true);
    return true;
  }

  add(key: string): void {
    this.keys.delete(key);
    this.keys.set(key, true);
    while (this.keys.size > this.limit) this.keys.delete(this.keys.keys().next().value!);
  }

  get size(): number {
    return this.keys.size;
  }
}

type BuiltModule = Extract<BuildResult, { ok: true }>;

export interface BuildCheckOptions {
  filtersDir: string;
  log?: Pick<Logger, "debug">;
}

export class PreflightGate {
  private readonly passed = new PassedSet();
  private readonly chains = new KeyedChain();
  /** Per filter, a built module that passed and is being committed (main.ts, after the gate). */
  private readonly pending = new Map<string, Omit<Plugin, "configuration"> & { wasm: Uint8Array }>();

  constructor(
    private readonly registry: FilterRegistry,
    private readonly state: OperatorState,
    private readonly preflight: PreflightFn = preflightModule,
    private readonly readCases: (dir: string) => Promise<TestCase[] | undefined> = readTestCases,
  ) {
    // A pending module stops being pending once its build is committed (it is in the history)
    // or failed (status error), or the filter is gone.
    registry.onChange(() => {
      for (const [name, module] of this.pending) {
        const entry = registry.get(name);
        const committed = registry.historyOf(name).some((m) => m.sha256 === module.sha256);
        if (!entry || entry.status === "error" || committed) this.pending.delete(name);
      }
    });
  }

  /** Starts `plugin` (and runs `cases`) unless that exact pair passed before. */
  async check(wasm: Uint8Array, plugin: Plugin, cases?: CaseSet): Promise<Verdict> {
    const t0 = performance.now();
    const key = verdictKey(plugin, cases);
    if (this.passed.has(key)) return { ok: true, ms: 0, remembered: true };
    const result = await this.preflight(wasm, { rootId: plugin.rootId, configuration: plugin.configuration, ...(cases ? { cases } : {}) });
    const ms = Math.round(performance.now() - t0);
    if (!result.ok) return { ok: false, error: result.error, ms };
    this.passed.add(key);
    // Passing its cases implies the start passed: a later configuration change back to this one is free.
    if (cases) this.passed.add(verdictKey(plugin));
    return { ok: true, ms, remembered: false };
  }

  /**
   * A successful build, before it is committed: undefined when it may go to Envoy, else the build
   * error (the module's reason, or the failed filter.test.json case).
   */
  checkBuild(result: BuiltModule, opts: BuildCheckOptions): Promise<string | undefined> {
    const { name } = result;
    return this.exclusive(name, async () => {
      this.pending.delete(name);
      let list: TestCase[] | undefined;
      try {
        list = await this.readCases(path.join(path.resolve(opts.filtersDir), name));
      } catch (err) {
        return `${name}: refused before push: ${err instanceof Error ? err.message : String(err)}`;
      }
      // The configuration Envoy will get once this commits: the operator's, else this build's filter.json's.
      const configuration = this.state.choice(name).configuration ?? result.manifest.configuration ?? "";
      const plugin: Plugin = { sha256: result.sha256, rootId: result.rootId, configuration };
      const cases = list ? { defaultConfiguration: result.manifest.configuration ?? "", list } : undefined;
      const verdict = await this.check(result.wasm, plugin, cases);
      opts.log?.debug({
        filter: name, sha256: result.sha256, preflightMs: verdict.ms, cases: list?.length ?? 0, ok: verdict.ok,
        remembered: verdict.ok && verdict.remembered,
      }, "pre-flight");
      if (!verdict.ok) return refusal(name, plugin, verdict.error);
      this.pending.set(name, { sha256: result.sha256, rootId: result.rootId, wasm: result.wasm });
      return undefined;
    });
  }

  /**
   * An operator change of `name` (configuration, pin): checks what it would make Envoy run, and
   * only if that passes runs `apply` (which saves it). Either way under the filter's lock.
   */
  change<T>(name: string, change: FilterChoice, apply: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
    return this.exclusive(name, async () => {
      const entry = this.registry.get(name);
      const history = this.registry.historyOf(name);
      const choice = this.state.choice(name);
      const before = pluginOf(entry, history, choice);
      const after = pluginOf(entry, history, applyChoice(choice, change));
      const pending = this.pending.get(name);
      for (const plugin of pluginsToCheck(before, after, pending)) {
        const wasm = plugin.sha256 === pending?.sha256 ? pending.wasm : await this.registry.readModule(plugin.sha256);
        if (!wasm) return { ok: false as const, error: `${name}: module ${plugin.sha256} is not retained any more: nothing changed` };
        const verdict = await this.check(wasm, plugin);
        if (!verdict.ok) return { ok: false as const, error: refusal(name, plugin, verdict.error) };
      }
      return { ok: true as const, value: await apply() };
    });
  }

  /** Runs `fn` alone for `name` (an upload: its check and its commit). */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.chains.run(name, fn);
  }
}

const gates = new WeakMap<FilterRegistry, PreflightGate>();

/**
 * The gate of a registry: the build hook (main.ts) and the admin routes share one, and so its
 * per-filter order and what it remembers. Keyed by registry; `state` is that registry's.
 */
export function preflightGate(registry: FilterRegistry, state: OperatorState): PreflightGate {
  let gate = gates.get(registry);
  if (!gate) {
    gate = new PreflightGate(registry, state);
    gates.set(registry, gate);
  }
  return gate;
}
