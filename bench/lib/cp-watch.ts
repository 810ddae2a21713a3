/**
 * Polls the control plane's admin API during a reload run and timestamps what changes:
 * per xDS type of one Envoy, the sent and ACKed versions (and NACKs) from GET /api/clients, and
 * per filter the module (sha256, builtAt, buildMs) from GET /api/filters. Sent and ACK times
 * are the control plane's own (sentAt, ackedAt); NACKs carry theirs too. Only an intermediate
 * version replaced between two polls goes unseen.
 */
import http from "node:http";
import { httpRequest } from "../../test/support/http.ts";
import { nowMs } from "./samples.ts";

export interface TypeEvent {
  at: number;
  type: string;
  kind: "sent" | "acked" | "nack";
  version: string;
}

export interface FilterEvent {
  at: number;
  name: string;
  sha256: string | null;
  status: string;
  builtAt?: string;
  buildMs?: number;
}

interface ClientJson {
  node: { id: string };
  types: Record<string, { short: string; sentVersion: string | null; sentAt: string | null; ackedVersion: string | null; ackedAt: string | null; lastNack: { at: string; version: string } | null }>;
}

interface FilterJson {
  name: string;
  sha256: string | null;
  status: string;
  builtAt?: string;
  buildMs?: number;
}

export class CpWatch {
  readonly typeEvents: TypeEvent[] = [];
  readonly filterEvents: FilterEvent[] = [];
  private readonly lastType = new Map<string, string>();
  private readonly lastFilter = new Map<string, string>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  private stopped = false;
  private loop: Promise<void> | undefined;
  polls = 0;

  constructor(private readonly adminUrl: string, private readonly nodeId: string, private readonly intervalMs = 20) {}

  /** Takes a first reading (the baseline), then keeps polling until stop(). */
  async start(): Promise<void> {
    await this.poll();
    this.loop = (async () => {
      while (!this.stopped) {
        await new Promise((r) => setTimeout(r, this.intervalMs));
        try {
          await this.poll();
        } catch {
          // a missed poll only widens the uncertainty of the next timestamp
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.agent.destroy();
  }

  /** Current sent/acked version of a type (as of the last poll). */
  current(type: string, kind: "sent" | "acked"): string | undefined {
    return this.lastType.get(`${type}/${kind}`);
  }

  private async get<T>(path: string): Promise<T> {
    const r = await httpRequest(`${this.adminUrl}${path}`, { agent: this.agent, timeoutMs: 5_000 });
    return JSON.parse(r.body) as T;
  }

  private async poll(): Promise<void> {
    const [clients, filters] = await Promise.all([this.get<ClientJson[]>("/api/clients"), this.get<FilterJson[]>("/api/filters")]);
    const at = nowMs();
    this.polls++;
    const client = clients.find((c) => c.node.id === this.nodeId);
    for (const t of Object.values(client?.types ?? {})) {
      this.note(stamp(t.sentAt, at), t.short, "sent", t.sentVersion);
      this.note(stamp(t.ackedAt, at), t.short, "acked", t.ackedVersion);
      if (t.lastNack) this.note(stamp(t.lastNack.at, at), t.short, "nack", `${t.lastNack.version}@${t.lastNack.at}`);
    }
    for (const f of filters) {
      const key = `${f.sha256}|${f.status}|${f.builtAt}`;
      if (this.lastFilter.get(f.name) === key) continue;
      this.lastFilter.set(f.name, key);
      const e: FilterEvent = { at, name: f.name, sha256: f.sha256, status: f.status };
      if (f.builtAt !== undefined) e.builtAt = f.builtAt;
      if (f.buildMs !== undefined) e.buildMs = f.buildMs;
      this.filterEvents.push(e);
    }
  }

  private note(at: number, type: string, kind: TypeEvent["kind"], version: string | null): void {
    if (version === null) return;
    const key = `${type}/${kind}`;
    if (this.lastType.get(key) === version) return;
    this.lastType.set(key, version);
    this.typeEvents.push({ at, type, kind, version });
  }
}

/** The control plane's own timestamp when it gave one, else when the poll saw the change. */
function stamp(iso: string | null | undefined, polledAt: number): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : polledAt;
}
