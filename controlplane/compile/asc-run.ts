// Runs one AssemblyScript 0.14 compile synchronously through asc's JS API, with all
// file I/O routed through us. Meant to run inside the compile worker (compile-worker.ts),
// never on the control plane's main thread: see compiler.ts for why.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { RUNTIME_PACKAGE, runtimeFileFor } from "./as-runtime.ts";
import { removeExports, unusedCallbacks } from "./trim-exports.ts";

/** One compile request, as sent from compiler.ts to the worker. */
export interface AscJob {
  /** asc command-line arguments (entry file relative to baseDir, then flags). */
  argv: string[];
  /** Absolute directory asc resolves relative paths against. */
  baseDir: string;
  /** Absolute node_modules whose packages win over any other copy (ours). */
  pinnedNodeModules: string;
  /**
   * Absolute folder (the filters folder) whose files must also resolve inside it: a link in
   * a filter folder to a file elsewhere reads as "not found".
   */
  confineDir?: string;
  /**
   * Unexport the proxy-wasm callbacks the filter's own sources never implement, so Envoy skips
   * them (trim-exports.ts).
   */
  trimExports?: boolean;
}

export type AscJobResult =
  | { ok: true; wasm: Uint8Array; warnings: string[]; trimmed: string[] }
  | { ok: false; error: string; crashed: boolean };

/** The part of assemblyscript/cli/asc.js we use (its own .d.ts is not worth pulling in). */
interface AscApi {
  ready: Promise<unknown>;
  main(
    argv: string[],
    options: {
      stdout: { write(chunk: string | Uint8Array): void };
      stderr: { write(chunk: string | Uint8Array): void };
      readFile(filename: string, baseDir: string): string | null;
      writeFile(filename: string, contents: string | Uint8Array, baseDir: string): void;
      listFiles(dirname: string, baseDir: string): string[] | null;
    },
    callback: (err: Error | null) => number,
  ): number;
}

/** File name we ask asc to write the binary to; it only ever reaches our writeFile. */
export const BINARY_OUT = "module.wasm";

let asc: AscApi | undefined;

/**
 * Loads asc once per thread. Loading it has process-wide side effects (asc removes every
 * `uncaughtException` listener; binaryen's Emscripten glue adds its own plus an
 * `unhandledRejection` handler that aborts), which is one reason this lives in a worker.
 */
export async function loadAsc(): Promise<AscApi> {
  if (asc) return asc;
  const require = createRequire(import.meta.url);
  const loaded = require("assemblyscript/cli/asc") as AscApi;
  await loaded.ready;
  asc = loaded;
  return loaded;
}

// asc colours its output when stdout is a TTY or `CI` is set in the environment.
const ANSI = /\u001b\[[0-9;]*m/g;
function clean(text: string): string {
  return text.replace(ANSI, "").replace(/\r\n/g, "\n").trim();
}

/**
 * Runs asc. Requires loadAsc() to have completed. Never throws: a crash inside the
 * compiler comes back as `crashed: true` so the caller can discard this thread, whose
 * compiler globals may be left half-updated.
 */
export function runAsc(job: AscJob): AscJobResult {
  if (!asc) throw new Error("runAsc before loadAsc");
  // asc writes each diagnostic with a single write() call, so chunks are diagnostics.
  const diagnostics: string[] = [];
  let wasm: Uint8Array | undefined;
  const decoder = new TextDecoder();
  const asText = (chunk: string | Uint8Array) =>
    typeof chunk === "string" ? chunk : decoder.decode(chunk);
  const shadowed = shadowChecker(job.pinnedNodeModules);
  const escapes = confinement(job.confineDir);
  // What the filter's own code says (every file read that is not the runtime), for trimExports.
  const filterSources: string[] = [];

  let failure: Error | null = null;
  let crash: unknown;
  try {
    asc.main(
      job.argv,
      {
        stdout: { write: () => {} }, // nothing goes there: the binary goes to writeFile
        stderr: { write: (c) => void diagnostics.push(clean(asText(c))) },
        readFile(filename, baseDir) {
          const abs = path.resolve(baseDir, filename);
          // Our flags are authoritative: a filter folder's asconfig.json must not add
          // entries or change the runtime.
          if (path.basename(abs) === "asconfig.json") return null;
          if (shadowed(abs) || escapes(abs)) return null;
          // proxy-runtime comes from the corrected copy in vendor/ (as-runtime.ts), never npm's.
          const runtimeFile = runtimeFileFor(abs, job.pinnedNodeModules);
          try {
            const text = fs.readFileSync(runtimeFile ?? abs, "utf8");
            if (runtimeFile === undefined) filterSources.push(text);
            return text;
          } catch {
            return null;
          }
        },
        writeFile(filename, contents) {
          if (filename !== BINARY_OUT || typeof contents === "string") return;
          // Copy into a buffer of our own: the array may be a view into binaryen's heap (or a
          // pooled Buffer), and the worker transfers this buffer to the main thread.
          wasm = new Uint8Array(contents);
        },
        listFiles: () => null, // only used by --lib, which we never pass
      },
      (err) => {
        failure = err;
        return err ? 1 : 0;
      },
    );
  } catch (err) {
    crash = err;
  }

  if (crash !== undefined) {
    const message = crash instanceof Error ? crash.message : String(crash);
    const shown = errorsOf(diagnostics);
    return {
      ok: false,
      crashed: true,
      error: [shown, `compiler crashed: ${clean(message)}`].filter(Boolean).join("\n\n"),
    };
  }
  // TS cannot see that the callback above ran synchronously and may have set this.
  const failed = failure as Error | null;
  if (failed || !wasm) {
    const shown = errorsOf(diagnostics) || diagnostics.join("\n\n");
    const summary = failed ? clean(failed.message) : "asc produced no binary";
    return { ok: false, crashed: false, error: shown || summary };
  }
  const warnings = diagnostics.filter((d) => d.startsWith("WARNING") && !isStdlibDiagnostic(d));
  const trimmed = job.trimExports ? unusedCallbacks(filterSources) : [];
  return { ok: true, wasm: removeExports(wasm, trimmed), warnings, trimmed };
}

/** ERROR diagnostics only: warnings would bury the one line a filter author needs. */
function errorsOf(diagnostics: string[]): string {
  return diagnostics.filter((d) => d.startsWith("ERROR")).join("\n\n");
}

// A warning located in asc's own standard library (e.g. AS201 in ~lib/number.ts, printed on
// every build that converts a usize to a string) is noise for a filter author.
function isStdlibDiagnostic(diagnostic: string): boolean {
  return /\n in ~lib\//.test(diagnostic);
}

/** A predicate: `abs` lies under `dir` but resolves (through links) outside it. */
function confinement(dir: string | undefined): (abs: string) => boolean {
  if (!dir) return () => false;
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return () => false;
  }
  const inside = (root: string, p: string) => {
    const rel = path.relative(root, p);
    return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
  };
  return (abs) => {
    if (!inside(dir, abs)) return false;
    try {
      return !inside(real, fs.realpathSync(abs));
    } catch {
      return false; // missing: asc reports it
    }
  };
}

/**
 * Returns a predicate telling whether `abs` is inside some other node_modules copy of a
 * package that the pinned node_modules also has. asc searches node_modules upward from
 * the importing file before any --path entry, so a filter from another repository would
 * otherwise pick up its own @solo-io/proxy-runtime instead of the one we ship (vendor/).
 */
function shadowChecker(pinned: string): (abs: string) => boolean {
  const pinnedPrefix = pinned.endsWith(path.sep) ? pinned : pinned + path.sep;
  const marker = `${path.sep}node_modules${path.sep}`;
  const known = new Map<string, boolean>();
  return (abs) => {
    if (abs.startsWith(pinnedPrefix)) return false;
    const at = abs.lastIndexOf(marker);
    if (at < 0) return false;
    const parts = abs.slice(at + marker.length).split(path.sep);
    const pkg = parts[0]?.startsWith("@") ? parts.slice(0, 2).join(path.sep) : parts[0];
    if (!pkg) return false;
    let pinnedHasIt = known.get(pkg);
    if (pinnedHasIt === undefined) {
      // The runtime is served from vendor/ whether or not npm installed its own copy.
      pinnedHasIt = pkg === path.join(...RUNTIME_PACKAGE.split("/")) || fs.existsSync(path.join(pinned, pkg, "package.json"));
      known.set(pkg, pinnedHasIt);
    }
    return pinnedHasIt;
  };
}
