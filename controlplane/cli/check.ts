// `test <name>`: build the filter exactly as the control plane does (asc, then validation
// against Envoy's host functions), then run the cases of its filter.test.json, if any,
// through the in-process proxy-wasm host.

import { readFile } from "node:fs/promises";
import path from "node:path";
import { buildFilter } from "../compile/builder.ts";
import { isValidFilterName } from "../compile/manifest.ts";
import { moduleCapabilities, type ModuleCapabilities } from "../compile/capabilities.ts";
import { validateModule } from "../compile/validate.ts";
import { runTestCase, type TestCase } from "../compile/preflight-cases.ts";
import { CliError, UsageError } from "./errors.ts";

export type { TestCase } from "../compile/preflight-cases.ts";

export const TEST_FILE = "filter.test.json";

export interface CheckReport {
  name: string;
  sha256: string;
  rootId: string;
  bytes: number;
  buildMs: number;
  abiVersion: string;
  /** What Envoy would grant it (filter.json `capabilities` + base set + its callbacks). */
  capabilities: ModuleCapabilities;
  cases: { name: string; ok: boolean; problems: string[]; warnings: string[] }[];
}

const fail = (file: string, what: string): never => {
  throw new CliError(`${file}: ${what}`);
};

function headerMap(file: string, where: string, v: unknown, allowNull: boolean): void {
  if (v === undefined) return;
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(file, `${where} must be an object of header: value`);
  for (const [k, value] of Object.entries(v as object)) {
    if (typeof value !== "string" && !(allowNull && value === null)) fail(file, `${where}.${k} must be a string${allowNull ? " or null (absent)" : ""}`);
  }
}

/** Reads and checks `filter.test.json`; undefined when the filter has none. */
export async function readTestCases(dir: string): Promise<TestCase[] | undefined> {
  const file = path.join(dir, TEST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return fail(file, `invalid JSON: ${(err as Error).message}`);
  }
  const cases = (data as { cases?: unknown } | null)?.cases;
  if (!Array.isArray(cases) || cases.length === 0) return fail(file, 'expected { "cases": [ ... ] } with at least one case');
  cases.forEach((c: unknown, i) => {
    const at = `cases[${i}]`;
    if (typeof c !== "object" || c === null) fail(file, `${at} must be an object`);
    const tc = c as Record<string, unknown>;
    for (const key of Object.keys(tc)) if (!["name", "configuration", "request", "response", "expect"].includes(key)) fail(file, `${at}: unknown key "${key}"`);
    if (typeof tc.name !== "string" || tc.name === "") fail(file, `${at}.name must be a non-empty string`);
    if (tc.configuration !== undefined && typeof tc.configuration !== "string") fail(file, `${at}.configuration must be a string`);
    headerMap(file, `${at}.request`, tc.request, false);
    headerMap(file, `${at}.response`, tc.response, false);
    const expect = (tc.expect ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(expect)) if (!["request", "response", "localReply"].includes(key)) fail(file, `${at}.expect: unknown key "${key}"`);
    headerMap(file, `${at}.expect.request`, expect.request, true);
    headerMap(file, `${at}.expect.response`, expect.response, true);
    if (expect.localReply !== undefined && expect.localReply !== null && !Number.isInteger(expect.localReply)) fail(file, `${at}.expect.localReply must be a status code or null`);
  });
  return cases as TestCase[];
}

export async function checkFilter(filtersDir: string, name: string): Promise<CheckReport> {
  if (!isValidFilterName(name)) throw new UsageError(`invalid filter name ${JSON.stringify(name)}`);
  const built = await buildFilter(filtersDir, name);
  if (!built.ok) throw new CliError(built.error);
  const validation = validateModule(built.wasm);
  if (!validation.ok) throw new CliError(`${name}: ${validation.error}`);
  const report: CheckReport = {
    name, sha256: built.sha256, rootId: built.rootId, bytes: built.wasm.byteLength, buildMs: built.buildMs, abiVersion: validation.abiVersion,
    capabilities: moduleCapabilities(built.wasm, built.manifest.capabilities ?? []), cases: [],
  };
  const cases = await readTestCases(path.join(path.resolve(filtersDir), name));
  // The same case runner as the pre-flight before a push (compile/preflight-cases.ts).
  for (const tc of cases ?? []) {
    report.cases.push({ name: tc.name, ...(await runTestCase(built.wasm, built.rootId, built.manifest.configuration ?? "", tc)) });
  }
  return report;
}
