// Turns file-system noise under filters/ into "filter X changed" / "filter X is gone".
//
// Editors save in bursts (write a temp file and rename it over the original; truncate then
// write; delete then recreate), so events are never interpreted one by one: any event under
// a filter folder (re)arms that filter's debounce timer, and when the burst settles we look
// at the disk: an entry file present (index.ts, or Cargo.toml for a Rust filter) -> changed,
// absent (and it was a filter) -> removed.

import { readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { watch } from "chokidar";
import { FILTER_NAME_RULE, isValidFilterName } from "./manifest.ts";

export interface FilterWatchHandlers {
  changed(name: string): void;
  removed(name: string): void;
  /** Watcher failures (e.g. out of inotify watches); logged to stderr when absent. */
  error?(err: Error): void;
  /** A top-level folder that is not taken as a filter, and why; once per name. */
  ignored?(name: string, reason: string): void;
}

/** Why a top-level entry is not a filter. */
export type IgnoredEntry = (name: string, reason: string) => void;

export const INVALID_NAME_REASON = `not a valid filter name (use ${FILTER_NAME_RULE}; folders starting with "_" or "." are libraries)`;
export const OUTSIDE_LINK_REASON = "a symbolic link out of the filters folder (links out of it are not followed)";

export interface FilterWatcher {
  /** Resolves once the initial scan is done; events before that are not reported. */
  ready: Promise<void>;
  /** Every path the watcher holds (folders and their entries): what inotify watches cover. */
  watched(): string[];
  close(): Promise<void>;
}

/** A filter folder holds one of these: AssemblyScript's entry, or a Rust crate's manifest. */
const ENTRIES = ["index.ts", "Cargo.toml"];
/** Files a build reads; editors litter folders with everything else. */
const SOURCE_FILE = /\.(ts|json|rs|toml|lock)$/;
const DEFAULT_DEBOUNCE_MS = 75;
// chokidar drops a change event that follows another for the same file within 50 ms, with
// no trailing event. Settling later than that after the last reported event guarantees the
// build reads the final content, so shorter debounces are raised to this.
const MIN_DEBOUNCE_MS = 60;
// A filter being written to continuously still gets built this often.
const MAX_WAIT_FACTOR = 10;

/**
 * Filters currently on disk: valid-named direct subfolders with an index.ts or Cargo.toml, sorted. A link to a
 * folder inside `dir` counts; a link out of it does not. Folders with other names are reported
 * to `ignored` (library folders starting with "_" or "." are not).
 */
export async function listFilters(dir: string, ignored?: IgnoredEntry): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() && !entry.isSymbolicLink()) continue;
    if (!isValidFilterName(entry.name)) {
      if (!/^[_.]/.test(entry.name)) ignored?.(entry.name, INVALID_NAME_REASON);
      continue;
    }
    if (entry.isSymbolicLink() && !(await resolvesInside(dir, entry.name))) {
      ignored?.(entry.name, OUTSIDE_LINK_REASON);
      continue;
    }
    if (await hasEntry(path.join(dir, entry.name))) names.push(entry.name);
  }
  return names.sort();
}

/** Whether `dir/name` (a link, maybe) resolves to somewhere inside `dir`. */
export async function resolvesInside(dir: string, name: string): Promise<boolean> {
  try {
    const [root, target] = await Promise.all([realpath(dir), realpath(path.join(dir, name))]);
    return isInside(root, target);
  } catch {
    return false;
  }
}

export function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}

export function watchFilters(
  dir: string,
  handlers: FilterWatchHandlers,
  opts: { debounceMs?: number } = {},
): FilterWatcher {
  const root = path.resolve(dir);
  const debounceMs = Math.max(MIN_DEBOUNCE_MS, opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  const maxWaitMs = debounceMs * MAX_WAIT_FACTOR;
  const known = new Set<string>();
  // Key: filter name, or ALL for a change in a shared library folder.
  const ALL = "\0all";
  const timers = new Map<string, { timer: NodeJS.Timeout; firstAt: number }>();
  let closed = false;
  let isReady = false;
  // Each ignored folder is reported once, however often it is touched or rescanned.
  const reported = new Set<string>();
  const ignored: IgnoredEntry = (name, reason) => {
    const key = `${name}\n${reason}`;
    if (reported.has(key)) return;
    reported.add(key);
    handlers.ignored?.(name, reason);
  };

  const reportError = (err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    if (handlers.error) handlers.error(error);
    else console.error(`filters watcher: ${error.message}`);
  };

  const settle = async (key: string) => {
    if (closed) return;
    if (key === ALL) {
      for (const name of await listFilters(root, ignored)) {
        known.add(name);
        handlers.changed(name);
      }
      return;
    }
    if (await hasEntry(path.join(root, key))) {
      if (!(await resolvesInside(root, key))) {
        ignored(key, OUTSIDE_LINK_REASON);
        if (known.delete(key)) handlers.removed(key);
        return;
      }
      known.add(key);
      handlers.changed(key);
    } else if (known.delete(key)) {
      handlers.removed(key);
    }
  };

  const touch = (key: string) => {
    const now = Date.now();
    const pending = timers.get(key);
    if (pending) clearTimeout(pending.timer);
    const firstAt = pending?.firstAt ?? now;
    const delay = Math.max(0, Math.min(debounceMs, firstAt + maxWaitMs - now));
    const timer = setTimeout(() => {
      timers.delete(key);
      settle(key).catch(reportError);
    }, delay);
    timers.set(key, { timer, firstAt });
  };

  const onEvent = (kind: "file" | "dir", file: string) => {
    if (!isReady || closed) return;
    const rel = path.relative(root, file);
    if (rel === "" || rel.startsWith("..")) return;
    const parts = rel.split(path.sep);
    const top = parts[0] ?? "";
    if (parts.length === 1 && !isValidFilterName(top)) {
      if (kind === "dir" && !/^[_.]/.test(top)) ignored(top, INVALID_NAME_REASON);
      return;
    }
    // A link is not followed (followSymlinks: false) and so arrives as a file: a link to a
    // filter folder settles like a folder; a loose file next to the filters settles to nothing.
    if (parts.length === 1 && kind === "file") return touch(top);
    // Only sources and manifests feed a build; editors litter folders with everything else.
    if (kind === "file" && !SOURCE_FILE.test(file)) return;
    if (top.startsWith("_") || top.startsWith(".")) touch(ALL);
    else if (isValidFilterName(top)) touch(top);
  };

  const watcher = watch(root, {
    ignoreInitial: true,
    ignored: (file) => isIgnored(root, file),
    // Native events (inotify/FSEvents), not stat polling.
    usePolling: false,
    // Delete followed by re-create within 100 ms is reported as a change.
    atomic: true,
    // Never descend through a link: one to node_modules cost 10,466 inotify watches. A link to
    // a sibling filter folder still counts as a filter (listFilters); edits are seen under
    // the folder it points to.
    followSymlinks: false,
  });
  watcher.on("add", (f) => onEvent("file", f));
  watcher.on("change", (f) => onEvent("file", f));
  watcher.on("unlink", (f) => onEvent("file", f));
  watcher.on("addDir", (f) => onEvent("dir", f));
  watcher.on("unlinkDir", (f) => onEvent("dir", f));
  watcher.on("error", reportError);

  const ready = new Promise<void>((resolve) => {
    watcher.once("ready", () => {
      listFilters(root, ignored)
        .then((names) => names.forEach((name) => known.add(name)))
        .catch(reportError)
        .finally(() => {
          isReady = true;
          resolve();
        });
    });
  });

  return {
    ready,
    watched: () => Object.entries(watcher.getWatched()).flatMap(([d, entries]) => [d, ...entries.map((e) => path.join(d, e))]),
    async close() {
      closed = true;
      for (const { timer } of timers.values()) clearTimeout(timer);
      timers.clear();
      await watcher.close();
    },
  };
}

// Editor droppings and things never part of a filter. The top-level folder is exempt from
// the dot rule: `filters/.shared/` is a library folder like `filters/_lib/`.
function isIgnored(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  if (rel === "" || rel.startsWith("..")) return false;
  const parts = rel.split(path.sep);
  const base = parts[parts.length - 1] ?? "";
  if (parts.includes("node_modules")) return true;
  // cargo's build output when someone runs cargo by hand in a filter folder (the control plane's
  // own builds write outside the filters folder): thousands of files, never an input.
  if (parts.length >= 2 && parts[1] === "target") return true;
  if (parts.slice(1).some((p) => p.startsWith("."))) return true; // dotfiles, .#lock files
  return /\.(swp|swx|swo)$|~$/.test(base) || base === "4913"; // vim, emacs backups, vim probe
}

async function hasEntry(dir: string): Promise<boolean> {
  for (const entry of ENTRIES) if (await isFile(path.join(dir, entry))) return true;
  return false;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
