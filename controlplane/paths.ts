import { fileURLToPath } from "node:url";
import path from "node:path";

/** Repository root, found from this file's location so any working directory works. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
