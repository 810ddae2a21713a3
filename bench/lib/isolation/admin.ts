/** The control plane's admin API as the isolation scenarios use it (JSON in, JSON out). */
import { httpRequest } from "../../../test/support/http.ts";
import type { FailPolicy } from "./types.ts";

export interface ApiAnswer {
  status: number;
  json: Record<string, unknown>;
}

export interface NackSeen {
  type: string;
  version: string;
  message: string;
  at: string;
}

export class AdminApi {
  constructor(private readonly baseUrl: string) {}

  async call(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<ApiAnswer> {
    const payload = body === undefined ? undefined : body instanceof Uint8Array ? Buffer.from(body) : JSON.stringify(body);
    const r = await httpRequest(`${this.baseUrl}${path}`, {
      method, body: payload, headers: payload === undefined ? {} : { "content-type": contentType }, timeoutMs: 15_000,
    });
    let json: Record<string, unknown> = {};
    try {
      json = r.body ? (JSON.parse(r.body) as Record<string, unknown>) : {};
    } catch {
      json = { error: `(not JSON) ${r.body.slice(0, 200)}` };
    }
    return { status: r.status, json };
  }

  /** PUT /api/filters/:name/module: a prebuilt module, validated like a built one. */
  upload(name: string, bytes: Uint8Array, rootId: string, capabilities?: readonly string[]): Promise<ApiAnswer> {
    const declared = capabilities && capabilities.length > 0 ? `&capabilities=${encodeURIComponent(capabilities.join(","))}` : "";
    return this.call("PUT", `/api/filters/${name}/module?rootId=${encodeURIComponent(rootId)}${declared}`, bytes, "application/wasm");
  }

  async setFailPolicy(name: string, policy: FailPolicy): Promise<void> {
    const r = await this.call("PUT", `/api/filters/${name}/fail-policy`, { failPolicy: policy });
    if (r.status !== 200) throw new Error(`fail-policy ${policy} for ${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }

  async switchFilter(name: string, on: boolean): Promise<void> {
    const r = await this.call("POST", `/api/filters/${name}/${on ? "enable" : "disable"}`);
    if (r.status !== 200) throw new Error(`${on ? "enable" : "disable"} ${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }

  async setConfiguration(name: string, configuration: string | undefined): Promise<void> {
    const r = configuration === undefined
      ? await this.call("DELETE", `/api/filters/${name}/configuration`)
      : await this.call("PUT", `/api/filters/${name}/configuration`, { configuration });
    if (r.status !== 200) throw new Error(`configuration of ${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }

  async filter(name: string): Promise<Record<string, unknown> | undefined> {
    const r = await this.call("GET", `/api/filters/${name}`);
    return r.status === 200 ? r.json : undefined;
  }

  /** Fail policies the running control plane accepts (from its OpenAPI document). */
  async failPolicies(): Promise<FailPolicy[]> {
    const doc = await this.call("GET", "/docs/json");
    const text = JSON.stringify(doc.json.paths?.["/api/filters/{name}/fail-policy" as keyof unknown] ?? {});
    const offered = (["closed", "open", "reload"] as const).filter((p) => text.includes(`"${p}"`));
    return offered.length > 0 ? offered : ["closed", "open"];
  }

  /** Every NACK recorded for any Envoy at or after `since` (ms epoch), from GET /api/clients. */
  async nacksSince(since: number): Promise<NackSeen[]> {
    const r = await httpRequest(`${this.baseUrl}/api/clients`);
    // The route's schema is an array of free-form objects; this is the part we read.
    const clients = JSON.parse(r.body) as { types: Record<string, { short: string; lastNack: { version: string; message: string; at: string } | null }> }[];
    return clients.flatMap((c) => Object.values(c.types))
      .flatMap((t) => (t.lastNack && Date.parse(t.lastNack.at) >= since ? [{ type: t.short, ...t.lastNack }] : []));
  }
}
