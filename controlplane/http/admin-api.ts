import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger } from "fastify";
import type { Logger } from "pino";
import type { AdminDeps } from "./admin-deps.ts";
import { installAuth } from "./auth.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { eventRoutes } from "./routes/events.ts";
import { filterRoutes } from "./routes/filters.ts";
import { statusRoutes } from "./routes/status.ts";

export type { AdminDeps } from "./admin-deps.ts";

/**
 * Admin API: one fastify app, one plugin per concern (routes/*). It reads registry, state and
 * client status, and mutates only operator state.
 */
export function createAdminApi(deps: AdminDeps, log: Logger, opts: { token?: string } = {}) {
  // JSON bodies are small; the module upload route raises its own limit.
  // Typed as fastify's base logger so route plugins take a plain FastifyInstance.
  const loggerInstance: FastifyBaseLogger = log.child({ component: "admin" });
  // Strict validation: unknown fields are rejected, not silently dropped, and types are not coerced.
  const app = Fastify({ loggerInstance, bodyLimit: 1024 * 1024, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } });
  installAuth(app, opts.token);
  // Every route carries a JSON schema; the OpenAPI document and its UI are served at /docs.
  void app.register(swagger, {
    openapi: {
      info: { title: "wasm-xds admin API", version: "1", description: "Filters, Envoys, events and metrics of the wasm-xds control plane." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: opts.token ? [{ bearer: [] }] : [],
    },
  });
  void app.register(swaggerUi, { routePrefix: "/docs" });
  void app.register(statusRoutes, deps);
  void app.register(filterRoutes, deps);
  void app.register(eventRoutes, deps);
  void app.register(dashboardRoutes, deps);

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url}` }));
  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (code === 500) req.log.error({ err }, "admin request failed");
    return reply.code(code).send({ error: err.message });
  });
  return app;
}
