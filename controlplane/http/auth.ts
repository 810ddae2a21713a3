import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Served without the admin token: pages and assets that hold no data (the dashboard). */
    public?: boolean;
  }
}

/** Open with a token set: the health check (probes carry no secrets) and the static docs UI. */
function isOpen(req: FastifyRequest): boolean {
  const url = req.routeOptions.url;
  if (req.routeOptions.config?.public === true) return true;
  // /docs: the OpenAPI document and its UI are static; the UI sends the token on "Try it out".
  return url === "/healthz" || url === "/docs" || (url?.startsWith("/docs/") ?? false);
}

const digest = (value: string): Buffer => createHash("sha256").update(value, "utf8").digest();
const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * Bearer-token protection of the admin API (issue 4). With a token, every route (every `/api`
 * route, `/metrics`, and any route added later: deny by default) needs
 * `Authorization: Bearer <token>`, except `/healthz`, `/docs` and routes marked
 * `config: { public: true }`; anything else, unknown paths included, gets 401 with a JSON reason
 * and `WWW-Authenticate: Bearer`. It runs as the first onRequest hook, before the body is read,
 * so a request without the token never costs a body parse. Without a token there is no check
 * (config.ts allows that only on a loopback address).
 */
export function installAuth(app: FastifyInstance, token: string | undefined): void {
  if (token === undefined || token === "") return;
  // Compare fixed-length digests: timingSafeEqual needs equal lengths, and the comparison then
  // reveals neither the token's length nor how many leading characters matched.
  const expected = digest(token);
  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    if (isOpen(req)) return;
    const header = req.headers.authorization;
    const presented = typeof header === "string" ? BEARER.exec(header)?.[1] : undefined;
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return;
    const missing = presented === undefined;
    req.log.warn({ url: req.url, remote: req.ip, reason: missing ? "no bearer token" : "wrong token" }, "admin request refused");
    return reply
      .code(401)
      .header("www-authenticate", missing ? 'Bearer realm="wasm-xds"' : 'Bearer realm="wasm-xds", error="invalid_token"')
      .header("cache-control", "no-store")
      .send({ error: missing ? "authentication required: send Authorization: Bearer <CP_ADMIN_TOKEN>" : "invalid bearer token" });
  });
}
