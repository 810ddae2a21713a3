// Parses and validates a routes file (docs/routes.md) into a RouteTable. Every error names the
// file and line of the offending YAML node, and nothing partial is ever returned: a file is
// either wholly good or refused.
import net from "node:net";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import { MODULE_CLUSTER, XDS_CLUSTER } from "../xds/resources.ts";
import type { HostPort } from "../xds/resources.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_MS, type HeaderMatch, type RetryPolicy, type Route, type RouteMatch, type RouteTable, type Upstream,
  type VirtualHost,
} from "./route-table.ts";

/** A refused routes file: `line` (1-based) when the problem has a place in it. */
export class RoutesFileError extends Error {
  constructor(readonly file: string, readonly reason: string, readonly line?: number) {
    super(`${file}${line !== undefined ? `:${line}` : ""}: ${reason}`);
  }
}

/** Clusters the control plane itself defines: an upstream may not take their names. */
const RESERVED_UPSTREAMS = new Set([MODULE_CLUSTER, XDS_CLUSTER]);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
const NAME_RULE = "1-100 of A-Z a-z 0-9 _ . -, starting with a letter or digit";
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** HTTP field names (RFC 9110 token), lower case as Envoy stores them; pseudo-headers such as :authority too. */
const HEADER_NAME = /^:?[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Envoy's retry_on conditions for HTTP routes. */
const RETRY_ON = new Set([
  "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited", "retriable-4xx",
  "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
]);
/** The longest duration accepted anywhere (a day): longer is always a typo. */
const MAX_DURATION_MS = 86_400_000;

/** Parses `text` (the content of `file`); throws RoutesFileError. */
export function parseRoutesFile(file: string, text: string): RouteTable {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0].line;
    const message = (first.message.split("\n")[0] ?? "").replace(/ at line \d+, column (\d+):?$/, " (column $1)");
    throw new RoutesFileError(file, `YAML: ${message}`, line);
  }
  return new Reader(file, doc, lineCounter).table();
}

type Fields = Map<string, { key: YamlNode; value: YamlNode | null }>;
/** A parsed route or virtual host with the nodes later checks point at. */
interface ParsedRoute {
  route: Route;
  node: YamlNode;
  upstreamNode: YamlNode;
}
interface ParsedHost {
  vhost: VirtualHost;
  node: YamlNode;
  domainNodes: YamlNode[];
  routes: ParsedRoute[];
}
const ROUTE_FIELDS = ["name", "prefix", "path", "regex", "headers", "upstream", "timeout", "retries"];

/** Walks the YAML tree (not its JS value), so every error can name its node's line. */
class Reader {
  constructor(private readonly file: string, private readonly doc: Document, private readonly lines: LineCounter) {}

  table(): RouteTable {
    const root = this.doc.contents;
    if (root === null || (isScalar(root) && (root.value === null || root.value === ""))) {
      this.fail(root, "the file is empty: expected upstreams and virtual_hosts");
    }
    const top = this.fields(root, "the file", ["upstreams", "virtual_hosts"], ["virtual_hosts"]);
    const upstreams = top.has("upstreams") ? this.upstreams(top.get("upstreams")!.value) : [];
    const known = new Map(upstreams.map((u) => [u.upstream.name, u]));
    const vhostsNode = top.get("virtual_hosts")!.value;
    const vhosts = this.list(vhostsNode, "virtual_hosts").map((n) => this.virtualHost(n));
    if (vhosts.length === 0) this.fail(vhostsNode, "virtual_hosts is empty: expected at least one virtual host");
    // Names and domains are unique across the file: filters target routes and hosts by them.
    const vhostNames = new Map<string, number | undefined>();
    const domains = new Map<string, string>();
    const routeNames = new Map<string, number | undefined>();
    for (const v of vhosts) {
      this.unique(vhostNames, v.vhost.name, v.node, "virtual host");
      v.domainNodes.forEach((d, i) => {
        const domain = v.vhost.domains[i]!.toLowerCase();
        const other = domains.get(domain);
        if (other !== undefined) {
          this.fail(d, `domain "${v.vhost.domains[i]}" is already served by virtual host "${other}" (each domain in one virtual host)`);
        }
        domains.set(domain, v.vhost.name);
      });
      for (const r of v.routes) {
        this.unique(routeNames, r.route.name, r.node, "route");
        if (!known.has(r.route.upstream)) {
          const defined = [...known.keys()].sort();
          const which = defined.length > 0 ? `defined: ${defined.join(", ")}` : "no upstreams defined";
          this.fail(r.upstreamNode, `route "${r.route.name}": upstream "${r.route.upstream}" is not defined (${which})`);
        }
      }
    }
    return { upstreams: upstreams.map((u) => u.upstream), virtualHosts: vhosts.map((v) => v.vhost) };
  }

  private upstreams(node: YamlNode | null): { upstream: Upstream; node: YamlNode }[] {
    const out: { upstream: Upstream; node: YamlNode }[] = [];
    for (const [name, { key, value }] of this.fields(node, "upstreams")) {
      if (!NAME.test(name)) this.fail(key, `upstream "${name}": invalid name (${NAME_RULE})`);
      if (RESERVED_UPSTREAMS.has(name)) {
        this.fail(key, `upstream "${name}": the name of a cluster the control plane defines itself; choose another`);
      }
      const f = this.fields(value, `upstream "${name}"`, ["endpoints", "connect_timeout"], ["endpoints"]);
      const epNode = f.get("endpoints")!.value;
      const epNodes = epNode !== null && isScalar(epNode) ? [epNode] : this.list(epNode, `upstream "${name}" endpoints`);
      if (epNodes.length === 0) this.fail(epNode, `upstream "${name}": endpoints is empty`);
      const endpoints = epNodes.map((n) => this.endpoint(n, name));
      const ips = endpoints.map((e) => net.isIP(e.host) !== 0);
      // One cluster type per upstream: EDS for addresses, STRICT_DNS (Envoy resolves) for names.
      if (ips.some((ip) => ip !== ips[0])) {
        this.fail(epNode, `upstream "${name}": mixes IP addresses and host names; use one kind per upstream`);
      }
      const timeout = f.get("connect_timeout");
      const connectTimeoutMs = timeout ? this.duration(timeout.value, `upstream "${name}" connect_timeout`, 1) : DEFAULT_CONNECT_TIMEOUT_MS;
      out.push({ upstream: { name, endpoints, connectTimeoutMs }, node: key });
    }
    return out;
  }

  private endpoint(node: YamlNode, upstream: string): HostPort {
    const v = this.str(node, `upstream "${upstream}" endpoint`);
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d+)$/.exec(v);
    const host = m?.[1] ?? m?.[2];
    if (!m || !host || (!net.isIP(host) && !HOSTNAME.test(host))) {
      this.fail(node, `upstream "${upstream}": endpoint "${v}" is not host:port (e.g. 127.0.0.1:8080, [::1]:8080 or web.internal:8080)`);
    }
    const port = Number(m[3]);
    if (!(port >= 1 && port <= 65535)) this.fail(node, `upstream "${upstream}": endpoint "${v}": port ${m[3]} is not 1-65535`);
    return { host, port };
  }

  private virtualHost(node: YamlNode): ParsedHost {
    const f = this.fields(node, "virtual host", ["name", "domains", "routes"], ["name", "domains", "routes"]);
    const nameNode = f.get("name")!.value;
    const name = this.name(nameNode, "virtual host");
    const domainsNode = f.get("domains")!.value;
    const domainNodes = this.list(domainsNode, `virtual host "${name}" domains`);
    if (domainNodes.length === 0) this.fail(domainsNode, `virtual host "${name}": domains is empty (use ["*"] for every host)`);
    const domains = domainNodes.map((d) => this.domain(d, name));
    const routesNode = f.get("routes")!.value;
    const routes = this.list(routesNode, `virtual host "${name}" routes`).map((r) => this.route(r, name));
    if (routes.length === 0) this.fail(routesNode, `virtual host "${name}": routes is empty`);
    return { vhost: { name, domains, routes: routes.map((r) => r.route) }, node: nameNode ?? node, domainNodes, routes };
  }

  private domain(node: YamlNode, vhost: string): string {
    const v = this.str(node, `virtual host "${vhost}" domain`);
    // Envoy: "*" alone, or one wildcard at the start ("*.example.com") or the end ("example.*").
    const bare = v.replace(/^\*/, "").replace(/\*$/, "");
    const wildcards = v.length - bare.length;
    const ok = v === "*" || (wildcards <= 1 && bare !== "" && /^[A-Za-z0-9._\-[\]:]+$/.test(bare));
    if (!ok) this.fail(node, `virtual host "${vhost}": domain "${v}" is not a host name, "*", "*.suffix" or "prefix.*"`);
    return v;
  }

  private route(node: YamlNode, vhost: string): ParsedRoute {
    const f = this.fields(node, `route in virtual host "${vhost}"`, ROUTE_FIELDS, ["name", "upstream"]);
    const nameNode = f.get("name")!.value;
    const name = this.name(nameNode, "route");
    const where = `route "${name}"`;
    const kinds = (["prefix", "path", "regex"] as const).filter((k) => f.has(k));
    if (kinds.length !== 1) {
      this.fail(node, `${where}: expected exactly one of prefix, path, regex (got ${kinds.length === 0 ? "none" : kinds.join(", ")})`);
    }
    const kind = kinds[0]!;
    const valueNode = f.get(kind)!.value;
    const value = this.str(valueNode, `${where} ${kind}`);
    const match: RouteMatch = {};
    if (kind === "regex") match.regex = this.regex(valueNode, value, `${where} regex`);
    else if (!value.startsWith("/")) this.fail(valueNode, `${where}: ${kind} "${value}" must start with "/"`);
    else match[kind] = value;
    if (f.has("headers")) {
      const headers = this.list(f.get("headers")!.value, `${where} headers`).map((h) => this.header(h, where));
      if (headers.length > 0) match.headers = headers;
    }
    const upstreamNode = f.get("upstream")!.value;
    const route: Route = { name, match, upstream: this.str(upstreamNode, `${where} upstream`) };
    if (f.has("timeout")) route.timeoutMs = this.duration(f.get("timeout")!.value, `${where} timeout`, 0);
    if (f.has("retries")) route.retries = this.retries(f.get("retries")!.value, where);
    return { route, node: nameNode ?? node, upstreamNode: upstreamNode ?? node };
  }

  private header(node: YamlNode, route: string): HeaderMatch {
    const f = this.fields(node, `${route} header match`, ["name", "exact", "prefix", "regex", "present"], ["name"]);
    const nameNode = f.get("name")!.value;
    const name = this.str(nameNode, `${route} header name`);
    if (!HEADER_NAME.test(name)) this.fail(nameNode, `${route}: header name "${name}" is not a lower-case HTTP field name`);
    const kinds = (["exact", "prefix", "regex", "present"] as const).filter((k) => f.has(k));
    if (kinds.length !== 1) this.fail(node, `${route}: header "${name}": expected exactly one of exact, prefix, regex, present`);
    const kind = kinds[0]!;
    const v = f.get(kind)!.value;
    if (kind === "present") {
      if (!isScalar(v) || typeof v.value !== "boolean") this.fail(v, `${route}: header "${name}": present must be true or false`);
      return { name, present: v.value };
    }
    const s = this.str(v, `${route} header "${name}" ${kind}`);
    return kind === "regex" ? { name, regex: this.regex(v, s, `${route} header "${name}" regex`) } : { name, [kind]: s };
  }

  private retries(node: YamlNode | null, route: string): RetryPolicy {
    const f = this.fields(node, `${route} retries`, ["retry_on", "num_retries"], ["retry_on"]);
    const onNode = f.get("retry_on")!.value;
    const on = this.str(onNode, `${route} retry_on`).split(",").map((s) => s.trim());
    const unknown = on.filter((c) => !RETRY_ON.has(c));
    if (unknown.length > 0 || on.length === 0) {
      const expected = [...RETRY_ON].join(", ");
      this.fail(onNode, `${route}: retry_on "${unknown.join(",")}" unknown (expected a comma-separated list of ${expected})`);
    }
    const num = f.get("num_retries");
    return { retryOn: on.join(","), numRetries: num ? this.int(num.value, `${route} num_retries`, 0, 10) : 1 };
  }

  /** RE2 (Envoy's engine) is close to JS syntax minus lookaround and backreferences. */
  private regex(node: YamlNode | null, source: string, where: string): string {
    const problem = re2Problem(source);
    if (problem !== undefined) this.fail(node, `${where} "${source}": ${problem}`);
    return source;
  }

  private name(node: YamlNode | null, what: string): string {
    const v = this.str(node, `${what} name`);
    if (!NAME.test(v)) this.fail(node, `${what} "${v}": invalid name (${NAME_RULE})`);
    return v;
  }

  private unique(seen: Map<string, number | undefined>, name: string, node: YamlNode, what: string): void {
    if (seen.has(name)) {
      const at = seen.get(name);
      this.fail(node, `duplicate ${what} name "${name}"${at !== undefined ? ` (first at line ${at})` : ""}`);
    }
    seen.set(name, this.line(node));
  }

  private duration(node: YamlNode | null, where: string, minMs: number): number {
    const raw = isScalar(node) && typeof node.value === "number" ? `${node.value}s` : this.str(node, where);
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(raw.trim());
    const ms = m ? Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"]) : NaN;
    if (!(ms >= minMs && ms <= MAX_DURATION_MS)) {
      const floor = minMs > 0 ? "above 0" : "0 turns it off";
      this.fail(node, `${where} "${raw}": expected a duration such as 250ms, 2s or 1m (${floor}, at most 24h)`);
    }
    return ms;
  }

  private int(node: YamlNode | null, where: string, min: number, max: number): number {
    if (!isScalar(node) || typeof node.value !== "number" || !Number.isInteger(node.value) || node.value < min || node.value > max) {
      this.fail(node, `${where}: expected an integer ${min}-${max}`);
    }
    return node.value;
  }

  private str(node: YamlNode | null, where: string): string {
    const n = this.deref(node);
    // Plain numbers and booleans are not names or paths: ask for quotes rather than guess.
    if (!isScalar(n) || typeof n.value !== "string" || n.value === "") this.fail(n ?? node, `${where}: expected a non-empty string`);
    return n.value;
  }

  private list(node: YamlNode | null, where: string): YamlNode[] {
    const n = this.deref(node);
    if (!isSeq(n)) this.fail(node, `${where}: expected a list`);
    return n.items.map((item) => this.deref(item as YamlNode) ?? this.fail(n, `${where}: empty list item`));
  }

  /** A mapping's fields; unknown keys are refused so a typo is never silently ignored. */
  private fields(node: YamlNode | null, where: string, allowed?: readonly string[], required: readonly string[] = []): Fields {
    const n = this.deref(node);
    if (!isMap(n)) this.fail(node, `${where}: expected a mapping`);
    const out: Fields = new Map();
    for (const pair of n.items) {
      const key = pair.key as YamlNode;
      if (!isScalar(key) || typeof key.value !== "string") this.fail(key, `${where}: keys must be strings`);
      if (allowed && !allowed.includes(key.value)) {
        this.fail(key, `${where}: unknown field "${key.value}" (expected ${allowed.join(", ")})`);
      }
      out.set(key.value, { key, value: this.deref(pair.value as YamlNode | null) });
    }
    for (const r of required) if (!out.has(r)) this.fail(n, `${where}: missing "${r}"`);
    return out;
  }

  private deref(node: YamlNode | null): YamlNode | null {
    return node !== null && isAlias(node) ? (node.resolve(this.doc) as YamlNode | undefined) ?? null : node;
  }

  private line(node: YamlNode | null | undefined): number | undefined {
    const start = node?.range?.[0];
    return start === undefined ? undefined : this.lines.linePos(start).line;
  }

  private fail(node: YamlNode | null | undefined, reason: string): never {
    throw new RoutesFileError(this.file, reason, this.line(node));
  }
}

/**
 * Why Envoy's RE2 would refuse `source`, or undefined: JS RegExp syntax first (RE2's is close),
 * then what JS has and RE2 lacks (lookaround, backreferences). RE2-only syntax JS rejects is
 * refused too, except leading inline flags such as (?i), which are common.
 */
export function re2Problem(source: string): string | undefined {
  const body = source.replace(/^\(\?[imsU]+\)/, "");
  try {
    new RegExp(body);
  } catch (err) {
    return `not a valid regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, "")})`;
  }
  let inClass = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "\\") {
      const next = body[i + 1] ?? "";
      if (!inClass && (/[1-9]/.test(next) || next === "k")) return "backreferences are not supported by RE2 (Envoy's regex engine)";
      i++;
    } else if (inClass) {
      if (c === "]") inClass = false;
    } else if (c === "[") {
      inClass = true;
    } else if (c === "(" && /^\?(=|!|<=|<!)/.test(body.slice(i + 1, i + 4))) {
      return "lookahead and lookbehind are not supported by RE2 (Envoy's regex engine)";
    }
  }
  return undefined;
}
