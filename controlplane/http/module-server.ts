import Fastify from "fastify";
import type { Logger } from "pino";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";

const MODULE_FILE = /^([0-9a-f]{64})\.wasm$/;

/**
 * Serves modules by content address. The URL only selects a key in the in-memory registry;
 * nothing from it ever becomes a file-system path.
 */
export function createModuleServer(registry: FilterRegistry, fetches: FetchTracker, log: Logger) {
  const app = Fastify({ loggerInstance: log.child({ component: "module-server" }) });
  // GET also answers HEAD (fastify's exposeHeadRoutes), with the same headers and no body.
  app.get<{ Params: { file: string }; Querystring: { node?: string } }>("/modules/:file", async (req, reply) => {
    const sha256 = MODULE_FILE.exec(req.params.file)?.[1];
    const bytes = sha256 ? registry.moduleBytes(sha256) : undefined;
    if (!sha256 || !bytes) {
      req.log.warn({ url: req.url }, "module not found");
      return reply.code(404).type("text/plain").send("no such module\n");
    }
    // Envoy's module URL names its node, so xDS streams learn when *their* Envoy has the module.
    const node = typeof req.query.node === "string" ? req.query.node : "";
    req.log.info({ sha256, size: bytes.byteLength, method: req.method, node }, "module served");
    if (req.method === "GET") {
      fetches.started(node, sha256);
      // "close" (and even "finish") also follow a download the client aborted; then the socket
      // has errored (ECONNRESET) and the fetch must not count as done: Envoy lacks the module.
      const socket = reply.raw.socket;
      let finished = false;
      reply.raw.once("finish", () => (finished = true));
      reply.raw.once("close", () => fetches.completed(node, sha256, finished && !socket?.errored));
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
