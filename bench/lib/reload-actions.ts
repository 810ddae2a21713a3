/**
 * The three reload scenarios as sequences of actions on the control plane, each saying which xDS
 * type it changes and how a response shows the new state (its marker headers):
 *   edit      save filters/add-header/index.ts with a new stamp: x-wasm-filter: v<N>   (build, ECDS)
 *   rebuild   the control for "edit": save a comment-only change; the control plane compiles
 *             it to the same module (same sha256), so nothing is pushed and Envoy does nothing;
 *             what remains is the compile's CPU on the machine Envoy shares
 *   toggle    POST /api/filters/add-header/disable|enable: x-wasm-filter absent/present (RDS)
 *   listener  add / remove the folder bench-extra (x-wasm-extra: e<N>): a listener change (build, LDS)
 * Counters live in the scenario object, so a second run (other load mode) keeps going from there.
 */
import fs from "node:fs";
import path from "node:path";
import { extraFilter, stampedAddHeader } from "./filters.ts";
import { markerValue } from "./samples.ts";
import type { ProductStack } from "./stacks.ts";

export type ReloadKind = "edit" | "rebuild" | "toggle" | "listener";

export interface Action {
  /** What was done, for grouping: save, comment, disable, enable, add, remove. */
  what: string;
  label: string;
  /** The filter whose build this action causes (none for a toggle or a removal). */
  buildOf?: string;
  /** The build is expected to produce the module already running (no push). */
  sameModule?: boolean;
  /** True for a response that shows this action took effect. */
  isNew(marker: string): boolean;
}

export interface ReloadScenario {
  kind: ReloadKind;
  title: string;
  /** xDS type whose sent/ACK versions tell the push. */
  xdsType: "ECDS" | "RDS" | "LDS";
  /** Actions per run must keep the starting state (toggle: even; listener: even). */
  evenActions: boolean;
  /** Performs action `i` of a run and describes it. */
  act(i: number): Promise<Action>;
}

const TARGET_FILTER = "add-header";
const EXTRA = "bench-extra";

export function editScenario(stack: ProductStack): ReloadScenario {
  let version = 0;
  const file = path.join(stack.filtersDir, TARGET_FILTER, "index.ts");
  return {
    kind: "edit",
    title: "edit the Wasm filter's source",
    xdsType: "ECDS",
    evenActions: false,
    async act() {
      const v = ++version;
      fs.writeFileSync(file, stampedAddHeader(`v${v}`));
      return {
        what: "save",
        label: `save v${v}`,
        buildOf: TARGET_FILTER,
        isNew: (m) => {
          const stamp = /^v(\d+)$/.exec(markerValue(m, "x-wasm-filter") ?? "");
          return stamp !== null && Number(stamp[1]) >= v;
        },
      };
    },
  };
}

export function rebuildScenario(stack: ProductStack): ReloadScenario {
  let n = 0;
  const file = path.join(stack.filtersDir, TARGET_FILTER, "index.ts");
  return {
    kind: "rebuild",
    title: "recompile to the same module (no push)",
    xdsType: "ECDS",
    evenActions: false,
    async act() {
      const current = fs.readFileSync(file, "utf8").replace(/\n\/\/ bench rebuild \d+\n$/, "\n");
      fs.writeFileSync(file, `${current}// bench rebuild ${++n}\n`);
      return { what: "comment", label: `comment ${n}`, buildOf: TARGET_FILTER, sameModule: true, isNew: () => false };
    },
  };
}

export function toggleScenario(stack: ProductStack): ReloadScenario {
  return {
    kind: "toggle",
    title: "disable / enable the Wasm filter",
    xdsType: "RDS",
    evenActions: true,
    async act(i) {
      const enable = i % 2 === 1;
      const action = enable ? "enable" : "disable";
      const r = await stack.cp.api(`/api/filters/${TARGET_FILTER}/${action}`, "POST");
      if (r.status !== 200) throw new Error(`POST ${action}: ${r.status} ${r.body}`);
      return {
        what: action,
        label: action,
        isNew: (m) => (markerValue(m, "x-wasm-filter") !== undefined) === enable,
      };
    },
  };
}

export function listenerScenario(stack: ProductStack): ReloadScenario {
  let added = 0;
  const dir = path.join(stack.filtersDir, EXTRA);
  return {
    kind: "listener",
    title: "add / remove a filter folder (listener change)",
    xdsType: "LDS",
    evenActions: true,
    async act(i) {
      if (i % 2 === 0) {
        const value = `e${++added}`;
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: 20 }));
        fs.writeFileSync(path.join(dir, "index.ts"), extraFilter(value));
        return { what: "add", label: `add ${EXTRA} (${value})`, buildOf: EXTRA, isNew: (m) => markerValue(m, "x-wasm-extra") === value };
      }
      fs.rmSync(dir, { recursive: true, force: true });
      return { what: "remove", label: `remove ${EXTRA}`, isNew: (m) => markerValue(m, "x-wasm-extra") === undefined };
    },
  };
}
