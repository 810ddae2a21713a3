import Fastify from "fastify";
import type { Logger } from "pino";
import { effectiveFilters, type EffectiveFilter } from "../registry/effective.ts";
import type { FilterRegistry } from "../registry/filter-registry.ts";
import type { OperatorState } from "../state/operator-state.ts";
import { renderMetrics } from "./metrics.ts";
import { describeClients, type ClientRegistry } from "../xds/client-status.ts";
import type { Snapshot } from "../xds/snapshot.ts";
import { shortName } from "../xds/type-urls.ts";

export interface AdminDeps {
  registry: FilterRegistry;
  state: OperatorState;
  clients: ClientRegistry;
  /** The snapshot Envoys are served (undefined before the first publish). */
  snapshot: () => Snapshot | undefined;
  /** True once the first scan and build of the filters dir finished. */
  ready: () => boolean;
}

const FILTER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** The API shape of a filter: what it is, whether Envoy runs it, and how its build went. */
function view(f: EffectiveFilter): Record<string, unknown> {
  const out: Record<string, unknown> = { name: f.name, enabled: f.enabled, order: f.order, sha256: f.sha256 ?? null, status: f.status };
  if (f.error !== undefined) out.error = f.error;
  if (f.builtAt !== undefined) out.builtAt = f.builtAt;
  if (f.buildMs !== undefined) out.buildMs = f.buildMs;
  return out;
}

/** Admin API: reads registry/state/client status, and mutates only operator state. */
export function createAdminApi(deps: AdminDeps, log: Logger) {
  const app = Fastify({ loggerInstance: log.child({ component: "admin" }) });

  app.get("/healthz", async (_req, reply) => {
    const ready = deps.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ok" : "starting" });
  });

  app.get("/api/filters", async () => effectiveFilters(deps.registry, deps.state).map(view));

  for (const action of ["enable", "disable"] as const) {
    app.post<{ Params: { name: string } }>(`/api/filters/:name/${action}`, async (req, reply) => {
      const { name } = req.params;
      if (!FILTER_NAME.test(name)) {
        return reply.code(400).send({ error: `invalid filter name ${JSON.stringify(name)}: expected ${FILTER_NAME.source}` });
      }
      if (req.body !== undefined && req.body !== null && !(typeof req.body === "object" && Object.keys(req.body).length === 0)) {
        return reply.code(400).send({ error: `${action} takes no request body` });
      }
      if (!deps.registry.get(name)) return reply.code(404).send({ error: `no filter named ${JSON.stringify(name)}` });
      await deps.state.update(name, { enabled: action === "enable" });
      req.log.info({ filter: name, action }, "filter switched");
      const updated = effectiveFilters(deps.registry, deps.state).find((f) => f.name === name);
      return updated ? view(updated) : reply.code(404).send({ error: `filter ${name} went away` });
    });
  }

  app.get("/metrics", async (_req, reply) => reply.type("text/plain; version=0.0.4").send(renderMetrics(deps.registry, deps.clients)));

  app.get("/api/clients", async () => describeClients(deps.clients.list()));

  // What Envoys are served: per type, the version and each resource's content hash. Two
  // replicas fed the same filters and state answer identically.
  app.get("/api/snapshot", async (_req, reply) => {
    const snapshot = deps.snapshot();
    if (!snapshot) return reply.code(503).send({ error: "no snapshot yet (initial build running)" });
    return Object.fromEntries([...snapshot.types].map(([typeUrl, t]) => [typeUrl, {
      short: shortName(typeUrl),
      version: t.version,
      resources: Object.fromEntries([...t.resources.values()].map((r) => [r.name, r.version])),
    }]));
  });

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url}` }));
  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (code === 500) req.log.error({ err }, "admin request failed");
    return reply.code(code).send({ error: err.message });
  });
  return app;
}
