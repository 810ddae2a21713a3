/**
 * What every scenario gets: the running stack, the admin API, traffic through Envoy, the NACK
 * watch, and the few steps they share (deploy a copy of a fixture under a fresh name with a
 * fail policy; time a recovery; check Envoy is alive).
 */
import { waitFor } from "../../../test/support/wait.ts";
import { AdminApi } from "./admin.ts";
import { isCacheMissNack, type NackWatch } from "./nack-watch.ts";
import type { Fixture, IsolationStack } from "./stack.ts";
import { healthy, Traffic, type Answer } from "./traffic.ts";
import type { FailPolicy } from "./types.ts";

export const ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
export const LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener";
export const ECDS_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

export interface ScenarioOptions {
  /** How long the spin scenario watches a stuck Envoy before killing it. */
  spinWindowMs: number;
  /** Deadline for any one wait (deploy, recovery). */
  waitMs: number;
}

export class ScenarioContext {
  readonly api: AdminApi;
  readonly traffic: Traffic;
  private seq = 0;

  constructor(readonly stack: IsolationStack, readonly nacks: NackWatch, readonly opts: ScenarioOptions) {
    this.api = new AdminApi(stack.cp.adminUrl);
    this.traffic = new Traffic(stack.ports.listener);
  }

  /** A filter name not used before in this run, e.g. "abort-request-closed-3". */
  freshName(base: string): string {
    return `${base}-${++this.seq}`;
  }

  /**
   * Uploads the fixture's module under `name` with `policy` and waits until Envoy runs it next
   * to add-header (its `marker` response header on a healthy answer).
   */
  async deploy(fixture: Fixture, name: string, policy: FailPolicy, marker: string, capabilities?: readonly string[]): Promise<void> {
    const bytes = this.stack.modules.get(fixture);
    if (!bytes) throw new Error(`no module for fixture ${fixture}`);
    const up = await this.api.upload(name, bytes, fixture, capabilities);
    if (up.status !== 200) throw new Error(`upload ${name}: ${up.status} ${JSON.stringify(up.json)}`);
    await this.api.setFailPolicy(name, policy);
    await this.until(`${name} (${policy}) running beside add-header`, (a) => healthy(a) && a.headers[marker] !== undefined);
  }

  /** Polls ordinary requests until `ok`; resolves with the answer. */
  until(what: string, ok: (a: Answer) => boolean, timeoutMs = this.opts.waitMs, intervalMs = 20): Promise<Answer> {
    return waitFor(async () => {
      const a = await this.traffic.send({}, 2_000);
      return ok(a) ? a : undefined;
    }, { what, timeoutMs, intervalMs, details: () => this.stack.details() });
  }

  /** Runs `action` and measures until an ordinary request is healthy again (ms), or null. */
  async recover(action: () => Promise<void>, ok: (a: Answer) => boolean = healthy): Promise<number | null> {
    const t0 = performance.now();
    await action();
    try {
      await this.until("healthy traffic after recovery", ok);
      return Math.round(performance.now() - t0);
    } catch {
      return null;
    }
  }

  /** Waits until the Envoy ACKed the control plane's current route configuration (RDS). */
  async routesSynced(): Promise<void> {
    const outcome = await this.settled(ROUTE_TYPE);
    if (outcome !== "acked") throw new Error(`Envoy rejected the routes: ${outcome}`);
  }

  /**
   * Waits until the Envoy answered the control plane's current version of `typeUrl`: "acked",
   * or the NACK's message (a code-cache-miss NACK is the control plane's own delivery step and
   * does not count: it re-sends and the wait goes on).
   */
  async settled(typeUrl: string, since = performance.now()): Promise<string> {
    return waitFor(async () => {
      const snapshot = (await this.api.call("GET", "/api/snapshot")).json as Record<string, { version?: string }>;
      const want = snapshot[typeUrl]?.version;
      const clients = (await this.api.call("GET", "/api/clients")).json as unknown as { types: Record<string, { ackedVersion: string | null }> }[];
      if (want !== undefined && clients.length > 0 && clients.every((c) => c.types[typeUrl]?.ackedVersion === want)) return "acked";
      const rejected = this.nacks.since(since).find((n) => n.typeUrl === typeUrl && n.version === want && !isCacheMissNack(n));
      return rejected ? `NACK: ${rejected.message}` : undefined;
    }, { what: `Envoy to answer the current ${typeUrl.slice(typeUrl.lastIndexOf(".") + 1)}`, timeoutMs: this.opts.waitMs, details: () => this.stack.details() });
  }

  /**
   * Waits until Envoy has no listener warming (an ACKed listener update keeps the old listener
   * serving until the new one's filters are initialised), so requests meet the new chain.
   */
  async listenersWarm(): Promise<void> {
    await waitFor(async () => !JSON.stringify(await this.stack.envoy.configDump("dynamic_listeners")).includes("warming_state") || undefined,
      { what: "Envoy's listener to finish warming", timeoutMs: this.opts.waitMs, details: () => this.stack.details() });
  }

  /** Process running and admin /ready answering LIVE. */
  async envoyAlive(): Promise<{ alive: boolean; ready: string }> {
    const envoy = this.stack.envoy;
    if (!envoy.running) return { alive: false, ready: `process ${envoy.describe()}` };
    try {
      const r = await envoy.admin("/ready", { timeoutMs: 2_000 });
      const body = r.body.trim();
      return { alive: r.status === 200 && body === "LIVE", ready: body || `status ${r.status}` };
    } catch (err) {
      return { alive: false, ready: `admin: ${err instanceof Error ? err.message : String(err)}` };
    }
  }

  /** "NACK (<type>): <message>" for rejections since t, else `otherwise`. */
  controlPlaneView(since: number, otherwise: string): string {
    const real = this.nacks.since(since).filter((n) => !isCacheMissNack(n));
    if (real.length === 0) return otherwise;
    const first = real[0]!;
    const type = first.typeUrl.slice(first.typeUrl.lastIndexOf(".") + 1);
    return `NACK (${type}): ${first.message.slice(0, 160)}`;
  }

  /** Envoy's counters and gauges whose names mention wasm (module downloads left out). */
  async wasmStats(): Promise<Record<string, number>> {
    try {
      const all = await this.stack.envoy.stats();
      return Object.fromEntries(Object.entries(all).filter(([k]) => /wasm/.test(k) && !/wasm_modules/.test(k)));
    } catch {
      return {};
    }
  }
}

/** "name +n" for every stat that changed between two wasmStats() readings. */
export function statChanges(before: Record<string, number>, after: Record<string, number>): string {
  const changed = Object.entries(after).filter(([k, v]) => v !== (before[k] ?? 0)).map(([k, v]) => {
    const d = v - (before[k] ?? 0);
    return `${k.replace(/^wasm\.envoy\.wasm\.runtime\.v8\./, "v8.")} ${d > 0 ? "+" : ""}${d}`;
  });
  return changed.length > 0 ? changed.join(", ") : "none";
}
