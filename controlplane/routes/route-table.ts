// The routing model the control plane renders into RDS, CDS and EDS: what the routes file
// (routes-file.ts) parses to, or, without a file, one catch-all route to CP_UPSTREAM.
import type { HostPort } from "../xds/resources.ts";

export interface Upstream {
  /** Also the CDS cluster's name. */
  name: string;
  /** host:port targets: all IP addresses (an EDS cluster) or all names (STRICT_DNS). */
  endpoints: readonly HostPort[];
  connectTimeoutMs: number;
}

export interface HeaderMatch {
  name: string;
  /** Exactly one of these. */
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
}

export interface RouteMatch {
  /** Exactly one of prefix, path (exact) and regex (RE2, whole path); headers narrow it. */
  prefix?: string;
  path?: string;
  regex?: string;
  headers?: readonly HeaderMatch[];
}

export interface RetryPolicy {
  /** Envoy's retry_on, comma-separated (e.g. "5xx,connect-failure"). */
  retryOn: string;
  numRetries: number;
}

export interface Route {
  /** Unique in the table: filters target routes by name. */
  name: string;
  match: RouteMatch;
  upstream: string;
  /** Envoy's route timeout; 0 turns it off; absent: Envoy's default (15 s). */
  timeoutMs?: number;
  retries?: RetryPolicy;
}

export interface VirtualHost {
  name: string;
  /** What the Host header must match (Envoy's rules: exact, `*.suffix`, `prefix.*`, `*`). */
  domains: readonly string[];
  routes: readonly Route[];
}

export interface RouteTable {
  upstreams: readonly Upstream[];
  virtualHosts: readonly VirtualHost[];
}

/** "host:port", "[v6]:port". */
export function hostPortText({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The names of the one route and cluster Envoy gets without a routes file (unchanged since before it). */
export const DEFAULT_VHOST = "all";
export const DEFAULT_ROUTE = "default";
export const DEFAULT_UPSTREAM = "upstream";
export const DEFAULT_CONNECT_TIMEOUT_MS = 2000;

/** No routes file: every request to CP_UPSTREAM, as before routes files existed. */
export function defaultRouteTable(upstream: HostPort): RouteTable {
  return {
    upstreams: [{ name: DEFAULT_UPSTREAM, endpoints: [upstream], connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS }],
    virtualHosts: [{
      name: DEFAULT_VHOST, domains: ["*"], routes: [{ name: DEFAULT_ROUTE, match: { prefix: "/" }, upstream: DEFAULT_UPSTREAM }],
    }],
  };
}
