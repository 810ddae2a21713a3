import Fastify from "fastify";
import type { Logger } from "pino";
import type { EventBus } from "../events/bus.ts";
import { MAX_TRACKED_NODE_ID } from "../registry/fetch-tracker.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { TlsMaterial } from "../tls.ts";

const MODULE_FILE = /^([0-9a-f]{64})\.wasm$/;

/**
 * Serves modules by content address, from the registry's retained modules, else from the module
 * store (registry.readModule). The URL only selects a key: a file name is built only from a
 * validated sha256, and stored bytes are checked against it before they are served.
 */
/** Where downloads are reported: the FetchTracker, or (replicas) a relay in front of it. */
export interface FetchSink {
  started(nodeId: string, sha256: string): void;
  completed(nodeId: string, sha256: string, finished?: boolean): void;
}

export function createModuleServer(registry: FilterRegistry, fetches: FetchSink, log: Logger, opts: { tls?: TlsMaterial; events?: EventBus } = {}) {
  // HTTPS with the server certificate when CP_TLS_CERT is set (Envoy's module cluster then speaks
  // TLS, see xds/resources.ts); `https: null` is plain HTTP, so one instance type for both.
  const app = Fastify({ loggerInstance: log.child({ component: "module-server" }), https: opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : null });
  // GET also answers HEAD (fastify's exposeHeadRoutes), with the same headers and no body.
  app.get<{ Params: { file: string }; Querystring: { node?: string } }>("/modules/:file", async (req, reply) => {
    const sha256 = MODULE_FILE.exec(req.params.file)?.[1];
    const bytes = sha256 ? await registry.readModule(sha256) : undefined;
    if (!sha256 || !bytes) {
      req.log.warn({ url: req.url }, "module not found");
      return reply.code(404).type("text/plain").send("no such module\n");
    }
    // Envoy's module URL names its node, so xDS streams learn when *their* Envoy has the module.
    // Anything may arrive there (the server listens on every interface): an absurdly long value
    // is served, not tracked, and logged shortened.
    const raw = typeof req.query.node === "string" ? req.query.node : "";
    const node = raw.length > MAX_TRACKED_NODE_ID ? "" : raw;
    const shown = raw.length > MAX_TRACKED_NODE_ID ? `${raw.slice(0, 64)}... (${raw.length} chars, not tracked)` : raw;
    req.log.info({ sha256, size: bytes.byteLength, method: req.method, node: shown }, "module served");
    if (req.method === "GET") {
      fetches.started(node, sha256);
      // "close" (and even "finish") also follow a download the client aborted; then the socket
      // has errored (ECONNRESET) and the fetch must not count as done: Envoy lacks the module.
      const socket = reply.raw.socket;
      let finished = false;
      reply.raw.once("finish", () => (finished = true));
      reply.raw.once("close", () => fetches.completed(node, sha256, finished && !socket?.errored));
      reply.raw.once("close", () => { if (finished && !socket?.errored) opts.events?.emit({ type: "module.served", sha256, node, bytes: bytes.byteLength }); });
    }
    return reply
      .type("application/wasm")
      .header("cache-control", "public, max-age=31536000, immutable")
      .header("etag", `"${sha256}"`)
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).type("text/plain").send("not found\n"));
  return app;
}
