// `new <name> [--lang rust]`: a filter folder from templates/filter/ (AssemblyScript) or
// templates/filter-rust/ (a Rust crate using proxy-wasm), written in one step (the control
// plane's watcher sees a complete folder), never over an existing one.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isValidFilterName } from "../compile/manifest.ts";
import { CliError, UsageError } from "./errors.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TEMPLATE_DIR = path.join(REPO, "templates", "filter");
export const RUST_TEMPLATE_DIR = path.join(REPO, "templates", "filter-rust");

export const LANGUAGES = ["assemblyscript", "rust"] as const;
export type Language = (typeof LANGUAGES)[number];
/** The shared helper the template imports as "../_lib/config". */
const LIB_CONFIG = path.join(REPO, "filters", "_lib", "config.ts");

export interface ScaffoldResult {
  dir: string;
  files: string[];
  /** `_lib/config.ts` was missing in that filters folder and was copied there. */
  libCreated?: string;
}

/** "rate-limit" -> "RateLimit": the template's class names. */
export function className(name: string): string {
  const pascal = name.split(/[-_]+/).filter(Boolean).map((p) => p[0]!.toUpperCase() + p.slice(1)).join("");
  return /^[0-9]/.test(pascal) ? `Filter${pascal}` : pascal;
}

// Names cargo refuses for a package (Rust keywords and the built-in crates).
const RESERVED_CRATES = new Set([
  "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn", "for",
  "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static", "struct",
  "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen",
  "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "test", "core", "std", "alloc",
  "proc_macro", "proc-macro",
]);

/** The Cargo package name for a filter: its name, unless cargo refuses that (leading digit, keyword). */
export function crateName(name: string): string {
  return /^[a-z]/.test(name) && !RESERVED_CRATES.has(name) && !RESERVED_CRATES.has(name.replaceAll("-", "_")) ? name : `filter-${name}`;
}

export function fillTemplate(text: string, name: string): string {
  return text.replaceAll("__NAME__", name).replaceAll("__CLASS__", className(name)).replaceAll("__CRATE__", crateName(name));
}

/**
 * Cargo.lock lists packages sorted by name; the template's root package is renamed, so its
 * entry is moved where cargo would put it (a hand-run cargo then leaves the file as it is).
 */
export function sortLockPackages(lock: string): string {
  const marker = "\n[[package]]\n";
  const [head, ...packages] = lock.split(marker);
  const nameOf = (block: string): string => /^name = "([^"]*)"/m.exec(block)?.[1] ?? "";
  packages.sort((a, b) => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0));
  return [head, ...packages.map((p) => (p.endsWith("\n") ? p : `${p}\n`))].join(marker).replace(/\n+$/, "\n");
}

export function scaffoldFilter(
  filtersDir: string, name: string, opts: { lang?: Language; templateDir?: string } = {},
): ScaffoldResult {
  const lang = opts.lang ?? "assemblyscript";
  const templateDir = opts.templateDir ?? (lang === "rust" ? RUST_TEMPLATE_DIR : TEMPLATE_DIR);
  if (!isValidFilterName(name)) {
    throw new UsageError(`invalid filter name ${JSON.stringify(name)}: use a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63 characters`);
  }
  const root = path.resolve(filtersDir);
  const dir = path.join(root, name);
  if (fs.existsSync(dir)) throw new CliError(`${dir} already exists: not overwriting it`);
  fs.mkdirSync(root, { recursive: true });

  let libCreated: string | undefined;
  const lib = path.join(root, "_lib", "config.ts");
  // Only AssemblyScript filters import the shared helper.
  if (lang === "assemblyscript" && !fs.existsSync(lib)) {
    fs.mkdirSync(path.dirname(lib), { recursive: true });
    fs.copyFileSync(LIB_CONFIG, lib, fs.constants.COPYFILE_EXCL);
    libCreated = lib;
  }

  // Written next to the target under a name the watcher ignores (not a valid filter name),
  // then renamed into place.
  const staging = path.join(root, `.${name}.new-${process.pid}-${Date.now()}`);
  fs.mkdirSync(staging);
  try {
    // Files in subfolders too (a Rust crate's src/lib.rs), as relative paths.
    const files = (fs.readdirSync(templateDir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
      .filter((e) => e.isFile())
      .map((e) => path.relative(templateDir, path.join(e.parentPath, e.name)))
      .sort();
    for (const file of files) {
      const filled = fillTemplate(fs.readFileSync(path.join(templateDir, file), "utf8"), name);
      fs.mkdirSync(path.dirname(path.join(staging, file)), { recursive: true });
      fs.writeFileSync(path.join(staging, file), path.basename(file) === "Cargo.lock" ? sortLockPackages(filled) : filled);
    }
    // mkdir claims the name atomically (EEXIST if someone else was faster); rename then
    // replaces that empty directory with the complete one.
    try {
      fs.mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new CliError(`${dir} already exists: not overwriting it`);
      throw err;
    }
    fs.renameSync(staging, dir);
    return { dir, files, ...(libCreated ? { libCreated } : {}) };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
