import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { AdminDeps } from "./admin-deps.ts";
import { installAuth } from "./auth.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { eventRoutes } from "./routes/events.ts";
import { filterRoutes } from "./routes/filters.ts";
import { routesRoutes } from "./routes/routes.ts";
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
  // Before any route exists, so every route is seen (plugins register theirs at ready()).
  const methods = methodsByPath(app);
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
  void app.register(routesRoutes, deps);
  void app.register(dashboardRoutes, deps);

  app.setNotFoundHandler((req, reply) => {
    // A path that exists with other methods: 405 and what it allows (RFC 9110 15.5.6).
    // (A path whose allowed methods include this one was refused by the router for another
    // reason, e.g. a parameter over its length limit: that stays a 404.)
    const allowed = methods.allowed(req.url);
    if (allowed.length > 0 && !allowed.includes(req.method)) {
      const error = `${req.method} is not allowed on ${req.url.split("?")[0]} (allowed: ${allowed.join(", ")})`;
      return reply.code(405).header("allow", allowed.join(", ")).send({ error });
    }
    return reply.code(404).send({ error: `no route ${req.method} ${req.url}` });
  });
  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (code === 500) req.log.error({ err }, "admin request failed");
    return reply.code(code).send({ error: err.message });
  });
  return app;
}

/**
 * Collects the declared methods of every route (onRoute), and answers which methods a concrete
 * request path allows: fastify itself answers 404 for an undeclared method on a known path.
 */
function methodsByPath(app: FastifyInstance): { allowed(url: string): string[] } {
  const routes: { pattern: RegExp; methods: Set<string> }[] = [];
  const byUrl = new Map<string, Set<string>>();
  app.addHook("onRoute", (route) => {
    let methods = byUrl.get(route.url);
    if (!methods) {
      methods = new Set();
      byUrl.set(route.url, methods);
      routes.push({ pattern: routePattern(route.url), methods });
    }
    for (const m of [route.method].flat()) methods.add(m);
  });
  return {
    allowed(url) {
      const path = url.split("?")[0] ?? "";
      const found = new Set<string>();
      for (const r of routes) if (r.pattern.test(path)) for (const m of r.methods) found.add(m);
      return [...found].sort();
    },
  };
}

/** A find-my-way URL (`/api/filters/:name/module`, `/docs/*`) as an anchored RegExp. */
function routePattern(url: string): RegExp {
  const source = url.split("/").map((segment) => {
    if (segment === "*") return ".*";
    return segment.replace(/:[A-Za-z0-9_]+|[.*+?^${}()|[\]\\]/g, (m) => (m.startsWith(":") ? "[^/]+" : `\\${m}`));
  }).join("/");
  return new RegExp(`^${source}$`);
}
