// The admin API as the CLI uses it: CP_ADMIN_URL, an optional CP_ADMIN_TOKEN, and errors that
// carry the API's own reason.

import type { FilterView } from "../http/api-view.ts";
import { CliError, UsageError } from "./errors.ts";

export const DEFAULT_ADMIN_URL = "http://127.0.0.1:19000";
const TIMEOUT_MS = 10_000;

/** A filter as GET /api/filters lists it. */
export type FilterInfo = FilterView;

export class AdminClient {
  readonly baseUrl: URL;

  constructor(url: string | undefined, private readonly token: string | undefined) {
    try {
      this.baseUrl = new URL(url || DEFAULT_ADMIN_URL);
    } catch {
      throw new UsageError(`CP_ADMIN_URL: not a URL: ${JSON.stringify(url)}`);
    }
    if (this.baseUrl.protocol !== "http:" && this.baseUrl.protocol !== "https:") {
      throw new UsageError(`CP_ADMIN_URL: expected http:// or https://, got ${JSON.stringify(url)}`);
    }
  }

  listFilters(): Promise<FilterInfo[]> {
    return this.request<FilterInfo[]>("GET", "/api/filters");
  }

  setFailPolicy(name: string, failPolicy: string): Promise<FilterInfo> {
    return this.request("PUT", `/api/filters/${encodeURIComponent(name)}/fail-policy`, { failPolicy });
  }

  switchFilter(name: string, enabled: boolean): Promise<FilterInfo> {
    return this.request<FilterInfo>("POST", `/api/filters/${encodeURIComponent(name)}/${enabled ? "enable" : "disable"}`);
  }

  async request<T>(method: string, path: string, payload?: unknown): Promise<T> {
    const url = new URL(path, this.baseUrl);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(payload !== undefined ? { "content-type": "application/json" } : {}) },
        ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as { code?: string } | undefined)?.code ?? err.message) : String(err);
      throw new CliError(`cannot reach the admin API at ${this.baseUrl.origin} (${cause}): is the control plane running (npm run cp)? Otherwise set CP_ADMIN_URL.`);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const reason = typeof body === "object" && body !== null && typeof (body as { error?: unknown }).error === "string"
        ? (body as { error: string }).error
        : text.trim() || res.statusText;
      const hint = res.status === 401 ? (this.token ? " (CP_ADMIN_TOKEN was rejected)" : " (set CP_ADMIN_TOKEN)") : "";
      throw new CliError(`${method} ${url.pathname}: ${res.status} ${reason}${hint}`);
    }
    return body as T;
  }
}
