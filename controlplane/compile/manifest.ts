// filters/<name>/filter.json (optional) and the facts about a filter read from its source.
// Parsing is strict: a typo such as "ordr" silently ignored would leave an operator
// wondering why the filter order never changes.

import { readFile } from "node:fs/promises";
import path from "node:path";
import { checkBuildSettings, type BuildSettings } from "./build-settings.ts";
import { CAPABILITY_GROUP_NAMES, isCapabilityGroup } from "./capabilities.ts";
import { FAIL_POLICIES, isFailPolicy, TARGET_KINDS, type FailPolicy } from "../state/operator-state.ts";

export interface Manifest {
  /** Position in the HCM filter chain; lower runs first. */
  order?: number;
  /** Initial on/off state before any operator choice. */
  enabled?: boolean;
  /** Plugin configuration string handed to the filter's onConfigure. */
  configuration?: string;
  /** Root id for Envoy's PluginConfig; overrides the one found in the source. */
  rootId?: string;
  /**
   * Host capability groups the filter needs beyond the base set (capabilities.ts), e.g.
   * ["http_call"]. Envoy denies calls to anything not granted.
   */
  capabilities?: string[];
  /** What Envoy does when the filter's VM fails, until an operator chooses otherwise. */
  failPolicy?: FailPolicy;
  /** How an AssemblyScript filter is compiled (build-settings.ts). */
  build?: BuildSettings;
  /**
   * Where the filter runs until an operator chooses otherwise (PUT /api/filters/:name/targets):
   * e.g. {"routes": ["api"]} for "only on the route named api". Lists omitted are empty.
   */
  targets?: ManifestTargets;
}

export type ManifestTargets = Partial<Record<(typeof TARGET_KINDS)[number], string[]>>;

export type ManifestResult = { ok: true; manifest: Manifest } | { ok: false; error: string };

export const MANIFEST_FILE = "filter.json";

// Filter names end up in xDS resource names, URLs and metric names: keep them boring.
const FILTER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function isValidFilterName(name: string): boolean {
  return FILTER_NAME.test(name);
}

/** The filter name rule, in words, for errors and logs. */
export const FILTER_NAME_RULE = "a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63 characters";

/**
 * Root ids go into Envoy's PluginConfig and back into the module through `plugin_root_id`;
 * the shipped filters use their filter names. Letters, digits and `._:-` cover every SDK's
 * examples; NUL, newlines, spaces and the like never reach Envoy.
 */
export const ROOT_ID_SOURCE = "^[A-Za-z0-9._:-]{1,128}$";
const ROOT_ID = new RegExp(ROOT_ID_SOURCE);
export const ROOT_ID_RULE = "1-128 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-'";

export function isValidRootId(id: string): boolean {
  return ROOT_ID.test(id);
}

const CHECKS: Record<keyof Manifest, (value: unknown) => string | undefined> = {
  order: (v) => (typeof v === "number" && Number.isSafeInteger(v) ? undefined : "an integer"),
  enabled: (v) => (typeof v === "boolean" ? undefined : "true or false"),
  configuration: (v) => (typeof v === "string" ? undefined : "a string"),
  rootId: (v) => (typeof v === "string" && isValidRootId(v) ? undefined : `a root id (${ROOT_ID_RULE})`),
  capabilities: checkCapabilities,
  failPolicy: (v) => (isFailPolicy(v) ? undefined : `one of ${FAIL_POLICIES.map((p) => `"${p}"`).join(", ")}`),
  build: checkBuildSettings,
  targets: checkTargets,
};

function checkTargets(v: unknown): string | undefined {
  const expected = `an object with lists of names under ${TARGET_KINDS.map((k) => `"${k}"`).join(", ")}`;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return expected;
  for (const [key, list] of Object.entries(v)) {
    if (!(TARGET_KINDS as readonly string[]).includes(key)) return `${expected}; unknown key "${key}"`;
    if (!Array.isArray(list) || list.some((e) => typeof e !== "string" || e.length === 0 || e.length > 253)) {
      return `${expected}; "${key}" must be a list of non-empty strings (at most 253 characters)`;
    }
  }
  return undefined;
}

function checkCapabilities(v: unknown): string | undefined {
  const expected = `a list of capability names (allowed: ${CAPABILITY_GROUP_NAMES.join(", ")})`;
  if (!Array.isArray(v)) return expected;
  const unknown = v.filter((g) => typeof g !== "string" || !isCapabilityGroup(g));
  if (unknown.length > 0) return `${expected}; unknown: ${unknown.map((u) => describe(u)).join(", ")}`;
  if (new Set(v).size !== v.length) return `${expected} without duplicates`;
  return undefined;
}

/** Parses manifest text; errors are prefixed with `source` (the file name by default). */
export function parseManifest(text: string, source = MANIFEST_FILE): ManifestResult {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `${source}: invalid JSON: ${withLineAndColumn(message, text)}` };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { ok: false, error: `${source}: must be a JSON object, got ${describe(data)}` };
  }
  const manifest: Record<string, unknown> = {};
  const allowed = Object.keys(CHECKS);
  for (const [key, value] of Object.entries(data)) {
    // hasOwn: a key such as "toString" must not find Object.prototype's.
    const check = Object.hasOwn(CHECKS, key) ? CHECKS[key as keyof Manifest] : undefined;
    if (!check) {
      return {
        ok: false,
        error: `${source}: unknown key "${key}" (allowed: ${allowed.join(", ")})`,
      };
    }
    const expected = check(value);
    if (expected) {
      return { ok: false, error: `${source}: "${key}" must be ${expected}, got ${describe(value)}` };
    }
    manifest[key] = value;
  }
  // Every key was checked against CHECKS above, which mirrors Manifest.
  return { ok: true, manifest: manifest as Manifest };
}

/** Reads `<filterDir>/filter.json`; a missing file is an empty manifest. */
export async function readManifest(filterDir: string): Promise<ManifestResult> {
  const file = path.join(filterDir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { ok: true, manifest: {} };
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `${MANIFEST_FILE}: cannot read: ${message}` };
  }
  return parseManifest(text);
}

/**
 * The root id registered by the source: the string literal passed as second argument to the
 * first `registerRootContext(...)` call outside comments. Undefined when there is none or the
 * argument is not a plain literal (e.g. a constant), in which case filter.json must say it.
 */
export function rootIdFromSource(src: string): string | undefined {
  return rootIdsFromSource(src)[0];
}

/** Every root id registered with a literal, in source order. */
export function rootIdsFromSource(src: string): string[] {
  const code = blankComments(src);
  const ids: string[] = [];
  const call = /\bregisterRootContext\s*\(/g;
  for (let match = call.exec(code); match; match = call.exec(code)) {
    const comma = topLevelComma(code, match.index + match[0].length);
    if (comma < 0) continue;
    const literal = stringLiteralAt(code, comma + 1);
    if (literal !== undefined) ids.push(literal);
  }
  return ids;
}

/** Replaces comments by spaces (keeping offsets), leaving string literals alone. */
function blankComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === '"' || c === "'" || c === "`") {
      const end = skipString(src, i);
      out += src.slice(i, end);
      i = end;
    } else if (c === "/" && src[i + 1] === "/") {
      const end = src.indexOf("\n", i);
      const stop = end < 0 ? src.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Index just past the string literal starting at `start` (at its quote). */
function skipString(src: string, start: number): number {
  const quote = src[start];
  let i = start + 1;
  while (i < src.length && src[i] !== quote) i += src[i] === "\\" ? 2 : 1;
  return Math.min(i + 1, src.length);
}

/** Offset of the first comma at nesting depth 0 after `start`, or -1 if the call ends first. */
function topLevelComma(code: string, start: number): number {
  let depth = 0;
  for (let i = start; i < code.length; i++) {
    const c = code[i];
    if (c === '"' || c === "'" || c === "`") {
      i = skipString(code, i) - 1;
    } else if (c === "(" || c === "[" || c === "{") {
      depth++;
    } else if (c === ")" || c === "]" || c === "}") {
      if (depth === 0) return -1;
      depth--;
    } else if (c === "," && depth === 0) {
      return i;
    }
  }
  return -1;
}

/** The value of a plain string literal starting after whitespace at `start`, if there is one. */
function stringLiteralAt(code: string, start: number): string | undefined {
  const m = /^\s*(["'`])/.exec(code.slice(start, start + 200));
  if (!m || !m[1]) return undefined;
  const open = start + m[0].length - 1;
  const end = skipString(code, open);
  const body = code.slice(open + 1, end - 1);
  if (m[1] === "`" && body.includes("${")) return undefined;
  return body.replace(/\\(.)/g, "$1");
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return String(value);
}

// V8 says "... in JSON at position N"; editors want line and column.
function withLineAndColumn(message: string, text: string): string {
  const m = /at position (\d+)/.exec(message);
  if (!m || !m[1]) return message;
  const before = text.slice(0, Number(m[1]));
  const line = before.split("\n").length;
  const column = before.length - before.lastIndexOf("\n");
  return `${message} (line ${line} column ${column})`;
}
