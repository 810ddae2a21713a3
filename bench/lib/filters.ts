/**
 * The bench's filter folders (private copies, edited freely) and the source variants it writes,
 * all derived from filters/add-header/index.ts so they do exactly its work.
 */
import fs from "node:fs";
import path from "node:path";
import { repoPath } from "../../test/support/paths.ts";

const SEED = repoPath("filters", "add-header", "index.ts");
const ROOT_ID = /registerRootContext\(([\s\S]*?)"add-header"\)/;
const RESPONSE_HEADER = /"x-wasm-filter", "add-header"/;

function seed(): string {
  const text = fs.readFileSync(SEED, "utf8");
  if (!ROOT_ID.test(text) || !RESPONSE_HEADER.test(text)) {
    throw new Error(`${SEED} changed: the bench expects registerRootContext(..., "add-header") and the response header x-wasm-filter: add-header`);
  }
  return text;
}

/** add-header under another root id (and so a distinct module). */
export function withRootId(source: string, rootId: string): string {
  return source.replace(ROOT_ID, `registerRootContext($1"${rootId}")`);
}

/** add-header whose response header says `x-wasm-filter: <value>` (the edit scenario's stamp). */
export function stampedAddHeader(value: string): string {
  return seed().replace(RESPONSE_HEADER, `"x-wasm-filter", "${value}"`);
}

/** A second filter for the listener-change scenario: answers `x-wasm-extra: <value>`. */
export function extraFilter(value: string): string {
  return withRootId(seed().replace(RESPONSE_HEADER, `"x-wasm-extra", "${value}"`), "bench_extra");
}

/** The repository's filters (add-header + _lib), copied to `dest`. */
export function singleFilterDir(dest: string): string {
  fs.cpSync(repoPath("filters"), dest, { recursive: true });
  return dest;
}

export const CHAIN_LENGTH = 5;

export function chainName(i: number): string {
  return `add-header-${i}`;
}

export function chainRootId(i: number): string {
  return `add_header_${i}`;
}

/** `_lib` plus five copies of add-header (add-header-1..5, root ids add_header_1..5, in order). */
export function chainFilterDir(dest: string): string {
  fs.mkdirSync(dest, { recursive: true });
  fs.cpSync(repoPath("filters", "_lib"), path.join(dest, "_lib"), { recursive: true });
  for (let i = 1; i <= CHAIN_LENGTH; i++) {
    const dir = path.join(dest, chainName(i));
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "index.ts"), withRootId(seed(), chainRootId(i)));
    fs.writeFileSync(path.join(dir, "filter.json"), JSON.stringify({ order: i * 10 }));
  }
  return dest;
}
