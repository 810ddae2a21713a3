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

/** add-header and the shared _lib from the repository, copied to `dest` (no other filter). */
export function singleFilterDir(dest: string): string {
  for (const folder of ["_lib", "add-header"]) fs.cpSync(repoPath("filters", folder), path.join(dest, folder), { recursive: true });
  return dest;
}

export const RUST_FILTER = "add-header-rust";

/**
 * filters/hello-rust (the Rust `proxy-wasm` crate) doing exactly add-header's work: request header
 * `x-wasm-processed: yes`, response header `x-wasm-filter: add-header`. So the Rust rows measure
 * the SDK and language, not different work.
 */
export function rustFilterDir(dest: string): string {
  const dir = path.join(dest, RUST_FILTER);
  fs.cpSync(repoPath("filters", "hello-rust"), dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}target`) });
  const lib = path.join(dir, "src", "lib.rs");
  const text = fs.readFileSync(lib, "utf8");
  const edited = text
    .replace('self.add_http_request_header("X-Wasm-Processed", PROCESSED);', 'self.add_http_request_header("x-wasm-processed", "yes");')
    .replace('self.add_http_response_header("x-hello-rust", PROCESSED);', 'self.add_http_response_header("x-wasm-filter", "add-header");');
  if (!edited.includes('"x-wasm-processed", "yes"') || !edited.includes('"x-wasm-filter", "add-header"')) {
    throw new Error(`${lib} changed: the bench expects add_http_request_header("X-Wasm-Processed", PROCESSED) and add_http_response_header("x-hello-rust", PROCESSED)`);
  }
  // PROCESSED is now unused: keep the build free of warnings.
  fs.writeFileSync(lib, edited.replace(/\n\/\/\/ The headers' value[^\n]*\nconst PROCESSED: &str = "Yes";\n/, "\n"));
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
