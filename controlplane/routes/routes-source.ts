// The routes file as a live input: loaded at start (a bad file refuses the start: there is no
// last good), then watched; an edit goes live when it parses, a bad one is reported and the
// last good routes keep serving. Changes roll out make-before-break (rollout() below).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import type { Logger } from "pino";
import type { RoutesFeed } from "../xds/inputs.ts";
import type { RouteTable, Upstream } from "./route-table.ts";
import { parseRoutesFile, RoutesFileError } from "./routes-file.ts";

/** What GET /api/routes shows. */
export interface RoutesView {
  /** null: no CP_ROUTES_FILE, the catch-all route to CP_UPSTREAM. */
  file: string | null;
  /** The file's last good content: what Envoy is (or is being moved to) serving. */
  table: RouteTable;
  /** When that content was loaded (ISO 8601). */
  loadedAt: string;
  /** The last edit, when it was refused: the reason, and the line (1-based) when it has one. */
  error: { message: string; line: number | null; at: string } | null;
}

/**
 * One step of a rollout the control plane waits on before the next: every connected Envoy has
 * the new clusters warm (so routes may name them), or has the new routes (so the clusters they
 * no longer name may go). Resolves false when it gave up waiting (the step proceeds anyway).
 */
export type RolloutStep = { kind: "clusters"; added: readonly Upstream[] } | { kind: "routes" };
export type Settle = (step: RolloutStep) => Promise<boolean>;

export interface RoutesSourceOptions {
  log: Logger;
  /** Absent: no waiting (unit tests, no Envoy). */
  settle?: Settle;
  debounceMs?: number;
}

const DEFAULT_DEBOUNCE_MS = 75;
// As in compile/watcher.ts: chokidar drops a change within 50 ms of the last one for a file.
const MIN_DEBOUNCE_MS = 60;
const MAX_WAIT_FACTOR = 10;

export class RoutesSource implements RoutesFeed {
  private applied: RouteTable;
  private good: RouteTable;
  private loadedAt = new Date().toISOString();
  private error: RoutesView["error"] = null;
  private readonly listeners: (() => void)[] = [];
  private watcher: FSWatcher | undefined;
  private timer: { timer: NodeJS.Timeout; firstAt: number } | undefined;
  private pending: RouteTable | undefined;
  private rolling: Promise<void> | undefined;
  private closed = false;

  private constructor(readonly file: string, table: RouteTable, private readonly opts: RoutesSourceOptions) {
    this.applied = table;
    this.good = table;
  }

  /** Loads `file`; throws RoutesFileError (with the line) when it cannot be read or is refused. */
  static async open(file: string, opts: RoutesSourceOptions): Promise<RoutesSource> {
    const abs = path.resolve(file);
    const table = parseRoutesFile(abs, await read(abs));
    opts.log.info({ file: abs, ...counts(table) }, "routes loaded");
    return new RoutesSource(abs, table, opts);
  }

  /** The routes Envoy is to serve now (during a rollout, a step between the old and the new). */
  current(): RouteTable {
    return this.applied;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  view(): RoutesView {
    return { file: this.file, table: this.good, loadedAt: this.loadedAt, error: this.error };
  }

  /** Watches the file (its folder, so an editor's rename-over is seen); resolves once watching. */
  async watch(): Promise<void> {
    const dir = path.dirname(this.file);
    const debounceMs = Math.max(MIN_DEBOUNCE_MS, this.opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    const w = watch(dir, { ignoreInitial: true, depth: 0, atomic: true, ignored: (p) => p !== dir && p !== this.file });
    const touched = (p: string): void => {
      if (p !== this.file || this.closed) return;
      // Editors save in bursts (truncate + write, write temp + rename): settle, then read.
      const now = Date.now();
      if (this.timer) clearTimeout(this.timer.timer);
      const firstAt = this.timer?.firstAt ?? now;
      const delay = Math.max(0, Math.min(debounceMs, firstAt + debounceMs * MAX_WAIT_FACTOR - now));
      this.timer = {
        firstAt,
        timer: setTimeout(() => {
          this.timer = undefined;
          void this.reload();
        }, delay),
      };
    };
    w.on("add", touched).on("change", touched).on("unlink", touched);
    w.on("error", (err) => this.opts.log.error({ err, file: this.file }, "routes file watcher failed"));
    this.watcher = w;
    await new Promise<void>((resolve) => w.once("ready", () => resolve()));
  }

  /** Reads the file again: a good edit rolls out, a bad one is recorded and logged. */
  async reload(): Promise<void> {
    let table: RouteTable;
    try {
      table = parseRoutesFile(this.file, await read(this.file));
    } catch (err) {
      const e = err instanceof RoutesFileError ? err : new RoutesFileError(this.file, (err as Error).message);
      this.error = { message: e.message, line: e.line ?? null, at: new Date().toISOString() };
      this.opts.log.error({ file: this.file, line: e.line, error: e.message }, "routes file refused; the last good routes keep serving");
      return;
    }
    this.error = null;
    if (JSON.stringify(table) === JSON.stringify(this.good)) return;
    this.good = table;
    this.loadedAt = new Date().toISOString();
    this.opts.log.info({ file: this.file, ...counts(table) }, "routes loaded");
    this.pending = table;
    this.rolling ??= this.rollout().finally(() => {
      this.rolling = undefined;
    });
    await this.rolling;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer.timer);
    await this.watcher?.close();
  }

  /**
   * Envoy does not warm routes, only clusters: a route naming a cluster Envoy does not have yet
   * (a new EDS cluster waits for its endpoints) answers 503, and so does a request to a cluster
   * removed before the route that named it. So a change moves in up to three steps, each after
   * every Envoy took the previous one: (1) the new clusters next to the old routes, (2) the new
   * routes, with the clusters they no longer name kept, (3) those clusters removed. A newer
   * edit arriving meanwhile continues from wherever this one got.
   */
  private async rollout(): Promise<void> {
    while (this.pending && !this.closed) {
      const next = this.pending;
      this.pending = undefined;
      const old = this.applied;
      const has = (t: RouteTable, name: string): boolean => t.upstreams.some((u) => u.name === name);
      const added = next.upstreams.filter((u) => !has(old, u.name));
      const removed = old.upstreams.filter((u) => !has(next, u.name));
      if (added.length > 0) {
        this.apply({ ...old, upstreams: [...old.upstreams, ...added] });
        await this.settle({ kind: "clusters", added });
      }
      this.apply({ ...next, upstreams: [...next.upstreams, ...removed] });
      if (removed.length > 0) {
        await this.settle({ kind: "routes" });
        // A newer edit may bring a removed upstream back: it continues from here instead.
        if (!this.pending) this.apply(next);
      }
    }
  }

  private apply(table: RouteTable): void {
    this.applied = table;
    for (const l of this.listeners) l();
  }

  private async settle(step: RolloutStep): Promise<void> {
    if (!this.opts.settle) return;
    const ok = await this.opts.settle(step).catch((err: unknown) => {
      this.opts.log.warn({ err }, "routes rollout: cannot tell whether Envoys took the step");
      return false;
    });
    if (!ok) {
      this.opts.log.warn({ step: step.kind, file: this.file }, "routes rollout: not every Envoy confirmed the step in time; going on");
    }
  }
}

/** The view without a routes file: the generated table, never an error. */
export function fixedRoutesView(table: RouteTable): () => RoutesView {
  const view: RoutesView = { file: null, table, loadedAt: new Date().toISOString(), error: null };
  return () => view;
}

async function read(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new RoutesFileError(file, `cannot read the routes file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function counts(t: RouteTable): { upstreams: number; virtualHosts: number; routes: number } {
  const routes = t.virtualHosts.reduce((n, v) => n + v.routes.length, 0);
  return { upstreams: t.upstreams.length, virtualHosts: t.virtualHosts.length, routes };
}
