// `new <name>`: a filter folder from templates/filter/, written in one step (the control
// plane's watcher sees a complete folder), never over an existing one.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isValidFilterName } from "../compile/manifest.ts";
import { CliError, UsageError } from "./errors.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TEMPLATE_DIR = path.join(REPO, "templates", "filter");
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

export function fillTemplate(text: string, name: string): string {
  return text.replaceAll("__NAME__", name).replaceAll("__CLASS__", className(name));
}

export function scaffoldFilter(filtersDir: string, name: string, templateDir = TEMPLATE_DIR): ScaffoldResult {
  if (!isValidFilterName(name)) {
    throw new UsageError(`invalid filter name ${JSON.stringify(name)}: use a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63 characters`);
  }
  const root = path.resolve(filtersDir);
  const dir = path.join(root, name);
  if (fs.existsSync(dir)) throw new CliError(`${dir} already exists: not overwriting it`);
  fs.mkdirSync(root, { recursive: true });

  let libCreated: string | undefined;
  const lib = path.join(root, "_lib", "config.ts");
  if (!fs.existsSync(lib)) {
    fs.mkdirSync(path.dirname(lib), { recursive: true });
    fs.copyFileSync(LIB_CONFIG, lib, fs.constants.COPYFILE_EXCL);
    libCreated = lib;
  }

  // Written next to the target under a name the watcher ignores (not a valid filter name),
  // then renamed into place.
  const staging = path.join(root, `.${name}.new-${process.pid}-${Date.now()}`);
  fs.mkdirSync(staging);
  try {
    const files = fs.readdirSync(templateDir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
    for (const file of files) {
      fs.writeFileSync(path.join(staging, file), fillTemplate(fs.readFileSync(path.join(templateDir, file), "utf8"), name));
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
