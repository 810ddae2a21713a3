// Builds a Rust filter (filters/<name>/Cargo.toml, a cdylib using the proxy-wasm crate) with
// cargo for wasm32-wasip1, as a child process: bounded in time and killed (with the rustc
// processes it started) on timeout or when this process exits.
//
// cargo writes into CARGO_TARGET_DIR, which the caller puts outside the filters folder (under
// the state directory), so the watcher never sees build output. Diagnostics come from
// `--message-format=json` on stdout; cargo's own errors (manifest, lock file, network) come on
// stderr as text. Both are turned into "filters/<name>/src/lib.rs:12:5: error[E0425]: ..." lines
// like AssemblyScript's, followed by rustc's rendered message.

import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, realpath, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { CompileOutcome } from "./compiler.ts";
import { buildPlacement, placedCommand, wrapperCouldNotExec } from "./placement.ts";

export const RUST_TARGET = "wasm32-wasip1";
export const CARGO_MANIFEST = "Cargo.toml";
export const CARGO_LOCK = "Cargo.lock";

/** A cold build downloads and compiles proxy-wasm and its dependencies: minutes on a slow link. */
export const DEFAULT_CARGO_TIMEOUT_MS = 300_000;
/** How much of cargo's stderr an error without diagnostics quotes. */
const STDERR_TAIL_CHARS = 4000;

export const INSTALL_HINT =
  "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip1` " +
  "(`npm run setup` adds the target when rustup is present)";

export interface CargoBuildOptions {
  /** CARGO_TARGET_DIR for this filter (see cargoTargetDir). */
  targetDir: string;
  /** Diagnostics name files relative to this folder (the filters folder's parent). */
  baseDir: string;
  timeoutMs?: number;
  /** The cargo binary; default $CARGO, then `cargo` on PATH. */
  cargo?: string;
}

/** The cargo binary this process runs. */
export function cargoBinary(): string {
  return process.env.CARGO || "cargo";
}

/**
 * The argv after `cargo` that shapes the module's bytes (the build cache hashes it). `--locked`
 * when the filter ships a Cargo.lock: a build never resolves different crate versions behind
 * the author's back (nor writes the lock file into the watched folder).
 */
export function cargoRecipe(locked: boolean): string[] {
  return ["build", "--release", "--target", RUST_TARGET, "--message-format=json", ...(locked ? ["--locked"] : [])];
}

/**
 * Per-filter target folder under `root`: named by the filter and a hash of its real folder, so
 * two filters folders (or a renamed one) never share build output, and cargo's lock on a target
 * folder never makes one filter's build wait for another's.
 */
export async function cargoTargetDir(root: string, filterDir: string): Promise<string> {
  const real = await realpath(filterDir).catch(() => path.resolve(filterDir));
  const tag = createHash("sha256").update(real).digest("hex").slice(0, 12);
  return path.join(root, `${path.basename(filterDir)}-${tag}`);
}

/** Default CARGO_TARGET_DIR root when the caller has no state directory (the CLI). */
export function defaultCargoTargetRoot(): string {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "wasm-xds", "cargo-target");
}

// Builds in flight: killed with this process (a control plane stopping mid-build must not leave
// rustc processes behind). Each is its own process group: cargo runs rustc as children.
const running = new Set<number>();
let exitHookInstalled = false;
function track(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const p of running) killGroup(p);
    });
  }
  running.add(pid);
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

export async function cargoBuild(filterDir: string, opts: CargoBuildOptions): Promise<CompileOutcome> {
  const started = performance.now();
  const durationMs = () => Math.round(performance.now() - started);
  // Real paths: cargo reports them (it runs from getcwd()), and diagnostics are made relative.
  const dir = await realpath(filterDir).catch(() => path.resolve(filterDir));
  const baseDir = await realpath(opts.baseDir).catch(() => path.resolve(opts.baseDir));
  const locked = await exists(path.join(dir, CARGO_LOCK));
  const cargo = opts.cargo ?? cargoBinary();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CARGO_TIMEOUT_MS;

  const run = await new Promise<RunResult>((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    // CP_BUILD_CPUS (placement.ts): cargo starts under taskset, so rustc and build scripts inherit it.
    const placed = placedCommand(cargo, cargoRecipe(locked), buildPlacement());
    const child = spawn(placed.command, placed.args, {
      cwd: dir,
      env: { ...process.env, CARGO_TARGET_DIR: opts.targetDir, CARGO_TERM_COLOR: "never", CARGO_TERM_PROGRESS_WHEN: "never" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    if (child.pid !== undefined) track(child.pid);
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid);
    }, timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr = (stderr + s).slice(-64 * 1024)));
    child.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ kind: "spawn-error", code: err.code, message: err.message });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve(timedOut ? { kind: "timeout" } : { kind: "exited", code, signal, stdout, stderr });
    });
  });

  if (run.kind === "spawn-error") {
    const error = run.code === "ENOENT"
      ? `cargo not found (${cargo}): Rust filters need the Rust toolchain: ${INSTALL_HINT}`
      : `cannot run ${cargo}: ${run.message}`;
    return { ok: false, error, durationMs: durationMs() };
  }
  if (run.kind === "exited" && wrapperCouldNotExec(run.code, run.stderr)) {
    return { ok: false, error: `cargo not found (${cargo}): Rust filters need the Rust toolchain: ${INSTALL_HINT}`, durationMs: durationMs() };
  }
  if (run.kind === "timeout") {
    return { ok: false, error: `cargo build timed out after ${timeoutMs} ms (killed)`, durationMs: durationMs() };
  }
  const parsed = parseCargoOutput(run.stdout, { filterDir: dir, baseDir });
  if (run.code !== 0 || parsed.errors.length > 0 || !parsed.artifact) {
    const fromStderr = cargoStderrErrors(run.stderr, { filterDir: dir, baseDir });
    const why = run.code === 0 ? "cargo produced no .wasm (is [lib] crate-type = [\"cdylib\"] in Cargo.toml?)"
      : `cargo build failed (${run.signal ? `signal ${run.signal}` : `exit code ${run.code}`})`;
    const shown = [...parsed.errors, ...(parsed.errors.length > 0 ? [] : fromStderr)];
    const text = shown.length > 0 ? shown.join("\n\n") : `${why}${tailOf(run.stderr)}`;
    return { ok: false, error: withHints(text), durationMs: durationMs() };
  }
  try {
    const wasm = new Uint8Array(await readFile(parsed.artifact));
    return { ok: true, wasm, durationMs: durationMs(), warnings: parsed.warnings };
  } catch (err) {
    return { ok: false, error: `cannot read cargo's output ${parsed.artifact}: ${(err as Error).message}`, durationMs: durationMs() };
  }
}

type RunResult =
  | { kind: "spawn-error"; code: string | undefined; message: string }
  | { kind: "timeout" }
  | { kind: "exited"; code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

export interface CargoOutput {
  /** One per error diagnostic: "<file>:<line>:<col>: <level>: <message>\n<rustc's rendering>". */
  errors: string[];
  /** Warnings about the filter's own crate (cargo caps dependencies' lints). */
  warnings: string[];
  /** The .wasm cargo reported for the filter's cdylib. */
  artifact?: string;
}

interface Span {
  file_name: string;
  line_start: number;
  column_start: number;
  is_primary: boolean;
}
interface Diagnostic {
  message: string;
  level: string;
  code?: { code: string } | null;
  spans: Span[];
  rendered?: string | null;
}
interface CargoMessage {
  reason?: string;
  manifest_path?: string;
  message?: Diagnostic;
  target?: { kind?: string[]; crate_types?: string[] };
  filenames?: string[];
}

/**
 * Reads cargo's `--message-format=json` stdout (one JSON object a line). Pure: unit-tested on
 * captured output. Lines that are not JSON objects are skipped (a build script may print).
 */
export function parseCargoOutput(stdout: string, where: { filterDir: string; baseDir: string }): CargoOutput {
  const out: CargoOutput = { errors: [], warnings: [] };
  const ownManifest = path.join(where.filterDir, CARGO_MANIFEST);
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    let msg: CargoMessage;
    try {
      msg = JSON.parse(line) as CargoMessage;
    } catch {
      continue;
    }
    if (msg.reason === "compiler-artifact" && msg.manifest_path === ownManifest) {
      const wasm = msg.filenames?.find((f) => f.endsWith(".wasm"));
      if (wasm && msg.target?.crate_types?.includes("cdylib")) out.artifact = wasm;
    } else if (msg.reason === "compiler-message" && msg.message) {
      const d = msg.message;
      const crateDir = msg.manifest_path ? path.dirname(msg.manifest_path) : where.filterDir;
      const text = formatDiagnostic(d, crateDir, where.baseDir);
      if (d.level === "error" || d.level.startsWith("error")) out.errors.push(text);
      else if (d.level === "warning" && msg.manifest_path === ownManifest) out.warnings.push(text);
    }
  }
  return out;
}

/** "filters/x/src/lib.rs:12:5: error[E0425]: cannot find value `y` in this scope", then rustc's text. */
export function formatDiagnostic(d: Diagnostic, crateDir: string, baseDir: string): string {
  const primary = d.spans.find((s) => s.is_primary) ?? d.spans[0];
  const level = d.code?.code ? `${d.level}[${d.code.code}]` : d.level;
  const where = primary
    ? `${displayPath(path.resolve(crateDir, primary.file_name), baseDir)}:${primary.line_start}:${primary.column_start}: `
    : "";
  const headline = `${where}${level}: ${d.message}`;
  // rustc's rendering starts with "error[E0425]: <message>" (lints: "warning: <message>"), which
  // the headline already says.
  const lines = (d.rendered ?? "").trimEnd().split("\n");
  if (lines[0] === `${level}: ${d.message}` || lines[0] === `${d.level}: ${d.message}`) lines.shift();
  const rendered = lines.join("\n");
  return rendered.trim() ? `${headline}\n${rendered}` : headline;
}

/**
 * cargo's own errors on stderr (a bad Cargo.toml, a stale Cargo.lock under --locked, a crate it
 * cannot download): each "error: ..." block, with a "--> Cargo.toml:8:14" location moved to the
 * front as "filters/x/Cargo.toml:8:14: error: ...".
 */
export function cargoStderrErrors(stderr: string, where: { filterDir: string; baseDir: string }): string[] {
  const blocks: string[][] = [];
  let current: string[] | undefined;
  for (const line of stderr.split("\n")) {
    if (/^error(\[\w+\])?:/.test(line)) {
      current = [line];
      blocks.push(current);
    } else if (/^warning\b/.test(line) || /^\s*(Compiling|Updating|Downloading|Downloaded|Locking|Adding|Blocking|Finished)\s/.test(line)) {
      current = undefined; // cargo's progress lines end an error's block
    } else {
      current?.push(line);
    }
  }
  return blocks.map((b) => {
    const text = b.join("\n").trimEnd();
    const at = /^\s*-->\s*(\S+?):(\d+):(\d+)/m.exec(text);
    if (!at || !at[1]) return text;
    const file = displayPath(path.resolve(where.filterDir, at[1]), where.baseDir);
    return `${file}:${at[2]}:${at[3]}: ${text}`;
  });
}

/** Relative to baseDir when inside it (filters/x/src/lib.rs), else as given (a crate in ~/.cargo). */
function displayPath(abs: string, baseDir: string): string {
  const rel = path.relative(baseDir, abs);
  return rel.startsWith("..") || path.isAbsolute(rel) ? abs : rel.split(path.sep).join("/");
}

// What the author most likely has to do, for errors whose text does not say it plainly.
function withHints(error: string): string {
  const hints: string[] = [];
  if (/target may not be installed|can't find crate for `(core|std)`/.test(error)) {
    hints.push(`the ${RUST_TARGET} target is missing: run \`rustup target add ${RUST_TARGET}\` (or \`npm run setup\`)`);
  }
  if (/lock file .* needs to be updated but --locked was passed|cannot update the lock file/.test(error)) {
    hints.push(`Cargo.lock does not match Cargo.toml: run \`cargo update\` (or \`cargo generate-lockfile\`) in the filter's folder`);
  }
  return hints.length > 0 ? `${error}\n\nhint: ${hints.join("; ")}` : error;
}

function tailOf(stderr: string): string {
  const tail = stderr.trim().slice(-STDERR_TAIL_CHARS);
  return tail ? `; its output:\n${tail}` : "; it printed nothing";
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

const TOOLCHAIN_TTL_MS = 5000;
const toolchains = new Map<string, { at: number; version: Promise<string> }>();

/**
 * `rustc -vV` and `cargo -V` as seen from `dir` (a rust-toolchain.toml there picks another
 * toolchain), for the build key. Remembered a few seconds: a build computes its key twice.
 * A missing toolchain is a version too ("rustc: not found"): the build then fails on its own.
 */
export function rustToolchainVersion(dir: string): Promise<string> {
  const now = Date.now();
  const known = toolchains.get(dir);
  if (known && now - known.at < TOOLCHAIN_TTL_MS) return known.version;
  const version = Promise.all([
    versionOf(process.env.RUSTC || "rustc", ["-vV"], dir),
    versionOf(cargoBinary(), ["-V"], dir),
  ]).then((parts) => parts.join("\n"));
  toolchains.set(dir, { at: now, version });
  return version;
}

function versionOf(bin: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(bin, args, { cwd, timeout: 20_000 }, (err, stdout) => {
      if (err) resolve(`${path.basename(bin)}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : "failed"}`);
      else resolve(stdout.trim());
    });
  });
}
