/**
 * Well-known paths of the repository (from dev/paths.ts, which `npm run dev` shares) and the
 * tests' work directories.
 */
import fs from "node:fs";
import path from "node:path";
import { repoPath } from "../../dev/paths.ts";

export { bootstrapTemplatePath, envoyBinary, repoPath, repoRoot } from "../../dev/paths.ts";

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
