// The admin API as the page sees it: same origin, an optional bearer token kept for the
// browser tab (sessionStorage), errors carrying the API's own reason.

const TOKEN_KEY = "wasm-xds.admin-token";

import type { FilterView } from "../api-view.ts";
export type { FilterView };

export interface TypeView {
  short: string;
  stream: number;
  sentVersion: string | null;
  ackedVersion: string | null;
  lastNack: { version: string; message: string; at: string } | null;
}

export interface ClientView {
  node: { id: string; cluster: string };
  streams: { id: number; peer: string; connectedAt: string }[];
  cacheMissResends: number;
  types: Record<string, TypeView>;
  /** The replica (CP_REPLICA_ID) this Envoy's streams are connected to. */
  replica?: string;
}

/** GET /api/routes (controlplane/http/routes/routes.ts). */
export interface RoutesApiView {
  file: string | null;
  loadedAt: string;
  error: { message: string; line: number | null; at: string } | null;
  upstreams: { name: string; endpoints: string[]; discovery: "eds" | "dns"; connectTimeoutMs: number }[];
  virtualHosts: {
    name: string;
    domains: string[];
    routes: {
      name: string;
      upstream: string;
      match: { prefix?: string; path?: string; regex?: string; headers?: { name: string }[] };
      timeoutMs?: number;
    }[];
  }[];
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export function getToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function api<T>(path: string, method = "GET"): Promise<T> {
  const res = await fetch(path, { method, headers: authHeaders(), cache: "no-store" });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text for the message
  }
  if (!res.ok) {
    const reason = typeof body === "object" && body !== null && "error" in body ? String((body as { error: unknown }).error) : text || res.statusText;
    throw new ApiError(res.status, `${res.status}: ${reason}`);
  }
  return body as T;
}
