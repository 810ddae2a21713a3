/**
 * Renders envoy-bootstrap/envoy.yaml (the one bootstrap users run through docker compose) for
 * an Envoy on loopback: the one `npm run dev` starts and the e2e tests' ones (through
 * test/support/bootstrap.ts, which defaults the token to the test run's). Only these fields
 * change; everything else is the file as shipped:
 *   - xds_cluster's endpoint -> xdsHost:xdsPort (cluster type STATIC when xdsHost is an IP)
 *   - admin address          -> 127.0.0.1:adminPort
 *   - node.id / node.cluster -> when given
 *   - ads_config.api_type    -> when given (GRPC | DELTA_GRPC)
 *   - xds_cluster failover   -> when xdsFailoverPorts is given: one more endpoint per port, each
 *                               at the next priority, and a TCP health check (see the option)
 *   - xds_cluster TLS        -> when tls is given: a transport_socket (TLS, optionally mTLS)
 *   - the xDS token          -> the `__CP_XDS_TOKEN__` placeholder of both grpc_services' initial
 *                               metadata (ADS, stat sink) becomes xdsToken
 * The YAML document model keeps the template's comments in the rendered file.
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import YAML from "yaml";
import { bootstrapTemplatePath } from "./paths.ts";

export type AdsApiType = "GRPC" | "DELTA_GRPC";

export interface BootstrapOpts {
  /** Port of the control plane's xDS gRPC server. */
  xdsPort: number;
  /** Host of the control plane (default 127.0.0.1). An IP makes xds_cluster STATIC, a name keeps STRICT_DNS. */
  xdsHost?: string;
  /**
   * Admin port on 127.0.0.1. Default 0: Envoy picks a free port and startEnvoy() reads it back
   * through `--admin-address-path`, which avoids port races.
   */
  adminPort?: number;
  /** node.id (default: the template's, "envoy-local"). */
  nodeId?: string;
  /** node.cluster (default: the template's, "wasm-xds"). */
  nodeCluster?: string;
  /** ADS flavour (default: the template's, GRPC). */
  apiType?: AdsApiType;
  /**
   * Point LDS and CDS at the per-type discovery services (ListenerDiscoveryService,
   * ClusterDiscoveryService) with `apiType` instead of one ADS stream; the control plane then
   * names per-type sources for RDS, ECDS and EDS in what it sends.
   */
  perTypeServices?: boolean;
  /**
   * Further control plane replicas on xdsHost, in order of preference. Each becomes an
   * xds_cluster endpoint at the next priority (xdsPort is priority 0), and the cluster gets a
   * fast TCP health check, so all xDS traffic goes to the first live replica and Envoy fails
   * over to the next one when it dies. Absent or empty: the single endpoint, no health check.
   */
  xdsFailoverPorts?: number[];
  /**
   * Talk to the control plane over TLS (CP_TLS_CERT on its side): xds_cluster gets an
   * `envoy.transport_sockets.tls` UpstreamTlsContext that trusts `caFile`, checks the server
   * certificate's SAN against `sni` (or xdsHost: an IP SAN for an IP), offers ALPN h2 (gRPC
   * servers insist on it) and, with `certFile` + `keyFile`, presents a client certificate (mTLS,
   * CP_TLS_CLIENT_CA). Absent: plaintext, as the template ships.
   */
  tls?: XdsTlsOpts;
  /**
   * The xDS token Envoy sends (`authorization: Bearer <token>` in initial_metadata): the control
   * plane's CP_XDS_TOKEN. null: the template's placeholder stays (an Envoy without the token).
   */
  xdsToken: string | null;
}

export interface XdsTlsOpts {
  /** PEM CA that signed the control plane's certificate. */
  caFile: string;
  /** Client certificate chain (PEM) for mTLS; with keyFile, or neither. */
  certFile?: string;
  keyFile?: string;
  /** SNI sent and SAN expected (default: xdsHost). */
  sni?: string;
}

const XDS_CLUSTER = "xds_cluster";
const TOKEN_PLACEHOLDER = "__CP_XDS_TOKEN__";
/** Where the template carries the token: the ADS service and the metrics_service stat sink. */
const TOKEN_PATHS: (string | number)[][] = [
  ["dynamic_resources", "ads_config", "grpc_services", 0, "initial_metadata"],
  ["stats_sinks", 0, "typed_config", "grpc_service", "initial_metadata"],
];

function loadTemplate(): YAML.Document {
  const doc = YAML.parseDocument(fs.readFileSync(bootstrapTemplatePath, "utf8"));
  if (doc.errors.length > 0) {
    throw new Error(`cannot parse ${bootstrapTemplatePath}: ${doc.errors.map((e) => e.message).join("; ")}`);
  }
  return doc;
}

function expectPath(doc: YAML.Document, keyPath: (string | number)[]): void {
  if (!doc.hasIn(keyPath)) {
    throw new Error(`${bootstrapTemplatePath}: expected ${keyPath.join(".")} to exist (template changed?)`);
  }
}

function checkPort(name: string, port: number, allowZero: boolean): void {
  if (!Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw new Error(`renderBootstrap: invalid ${name} ${port}`);
  }
}

/** The rendered bootstrap as YAML text (with the template's comments and a header). */
export function renderBootstrap(opts: BootstrapOpts): string {
  const xdsHost = opts.xdsHost ?? "127.0.0.1";
  const adminPort = opts.adminPort ?? 0;
  checkPort("xdsPort", opts.xdsPort, false);
  checkPort("adminPort", adminPort, true);

  const doc = loadTemplate();

  // xds_cluster: found by name, not position.
  const clusters: unknown = doc.getIn(["static_resources", "clusters"]);
  const index = YAML.isSeq(clusters)
    ? clusters.items.findIndex((item) => YAML.isMap(item) && item.get("name") === XDS_CLUSTER)
    : -1;
  if (index < 0) throw new Error(`${bootstrapTemplatePath}: no static cluster named ${XDS_CLUSTER}`);
  const cluster = ["static_resources", "clusters", index];
  const socketAddress = [...cluster, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address"];
  expectPath(doc, [...socketAddress, "address"]);
  expectPath(doc, [...socketAddress, "port_value"]);
  doc.setIn([...socketAddress, "address"], xdsHost);
  doc.setIn([...socketAddress, "port_value"], opts.xdsPort);
  // STRICT_DNS on an IP literal works too, but STATIC says what it is and needs no resolver.
  if (net.isIP(xdsHost) !== 0) doc.setIn([...cluster, "type"], "STATIC");
  const failover = opts.xdsFailoverPorts ?? [];
  if (failover.length > 0) {
    for (const port of failover) checkPort("xdsFailoverPorts[]", port, false);
    const endpoints = [...cluster, "load_assignment", "endpoints"];
    // Priority 0 is the template's endpoint (just set to xdsHost:xdsPort); one priority per replica.
    doc.setIn([...endpoints, 0, "priority"], 0);
    failover.forEach((port, i) => {
      doc.addIn(endpoints, doc.createNode({
        priority: i + 1,
        lb_endpoints: [{ endpoint: { address: { socket_address: { address: xdsHost, port_value: port } } } }],
      }));
    });
    // Priorities only fail over on health: a connect-only TCP check marks a dead replica
    // unhealthy within one interval (no_traffic_interval too: before the first stream, the
    // cluster has seen no traffic and would otherwise be checked once a minute).
    doc.setIn([...cluster, "health_checks"], doc.createNode([{
      timeout: "1s",
      interval: "0.2s",
      no_traffic_interval: "0.2s",
      unhealthy_threshold: 1,
      healthy_threshold: 1,
      tcp_health_check: {},
    }]));
  }

  if (opts.tls) doc.setIn([...cluster, "transport_socket"], doc.createNode(xdsTransportSocket(opts.tls, xdsHost)));

  expectPath(doc, ["admin", "address", "socket_address", "address"]);
  doc.setIn(["admin", "address", "socket_address", "address"], "127.0.0.1");
  doc.setIn(["admin", "address", "socket_address", "port_value"], adminPort);

  if (opts.nodeId !== undefined) doc.setIn(["node", "id"], opts.nodeId);
  if (opts.nodeCluster !== undefined) doc.setIn(["node", "cluster"], opts.nodeCluster);
  if (opts.apiType !== undefined) {
    expectPath(doc, ["dynamic_resources", "ads_config", "api_type"]);
    doc.setIn(["dynamic_resources", "ads_config", "api_type"], opts.apiType);
  }
  // The token, in the template's own metadata entries (checked, so a changed template fails loudly).
  const metadata = TOKEN_PATHS.map((p) => {
    const value: unknown = doc.getIn([...p, 0, "value"]);
    if (doc.getIn([...p, 0, "key"]) !== "authorization" || typeof value !== "string" || !value.includes(TOKEN_PLACEHOLDER)) {
      throw new Error(`${bootstrapTemplatePath}: expected ${p.join(".")}[0] to be authorization: "Bearer ${TOKEN_PLACEHOLDER}" (template changed?)`);
    }
    const rendered = opts.xdsToken === null ? value : value.replace(TOKEN_PLACEHOLDER, opts.xdsToken);
    doc.setIn([...p, 0, "value"], rendered);
    return [{ key: "authorization", value: rendered }];
  })[0]!;
  if (opts.perTypeServices) {
    const source = {
      api_config_source: {
        api_type: opts.apiType ?? "GRPC",
        transport_api_version: "V3",
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER }, initial_metadata: metadata }],
      },
      resource_api_version: "V3",
    };
    doc.deleteIn(["dynamic_resources", "ads_config"]);
    doc.setIn(["dynamic_resources", "lds_config"], doc.createNode(source));
    doc.setIn(["dynamic_resources", "cds_config"], doc.createNode(source));
  }

  // The token itself is in the metadata above; the header only says whether there is one.
  const header =
    ` Rendered by dev/bootstrap.ts from envoy-bootstrap/envoy.yaml.\n` +
    ` Overrides: ${JSON.stringify({ ...opts, xdsHost, adminPort, xdsToken: opts.xdsToken === null ? null : "(set)" })}\n`;
  doc.commentBefore = doc.commentBefore ? `${header}\n${doc.commentBefore}` : header;
  return doc.toString({ lineWidth: 0 });
}

function xdsTransportSocket(tls: XdsTlsOpts, xdsHost: string): Record<string, unknown> {
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new Error("renderBootstrap: tls.certFile and tls.keyFile go together");
  }
  const peer = tls.sni ?? xdsHost;
  const isIp = net.isIP(peer) !== 0;
  const common: Record<string, unknown> = {
    alpn_protocols: ["h2"],
    validation_context: {
      trusted_ca: { filename: tls.caFile },
      match_typed_subject_alt_names: [{ san_type: isIp ? "IP_ADDRESS" : "DNS", matcher: { exact: peer } }],
    },
  };
  if (tls.certFile !== undefined && tls.keyFile !== undefined) {
    common.tls_certificates = [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }];
  }
  const context: Record<string, unknown> = {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    common_tls_context: common,
  };
  // RFC 6066: no IP literals in SNI.
  if (!isIp) context.sni = peer;
  return { name: "envoy.transport_sockets.tls", typed_config: context };
}

/** Writes the rendered bootstrap to `<dir>/<fileName>` (default envoy.yaml) and returns its path. */
export function writeBootstrap(dir: string, opts: BootstrapOpts, fileName = "envoy.yaml"): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, fileName);
  fs.writeFileSync(file, renderBootstrap(opts));
  return file;
}
