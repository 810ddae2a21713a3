import type { FastifyInstance } from "fastify";
import { effectiveFilters, type EffectiveFilter } from "../../registry/effective.ts";
import type { AdminDeps } from "../admin-deps.ts";

const FILTER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** The API shape of a filter: what it is, whether Envoy runs it, and how its build went. */
export function filterView(f: EffectiveFilter): Record<string, unknown> {
  const out: Record<string, unknown> = { name: f.name, enabled: f.enabled, order: f.order, sha256: f.sha256 ?? null, status: f.status };
  if (f.error !== undefined) out.error = f.error;
  if (f.builtAt !== undefined) out.builtAt = f.builtAt;
  if (f.buildMs !== undefined) out.buildMs = f.buildMs;
  return out;
}

/** Filter routes: list, and switch on/off (an operator-state change, pushed as RDS). */
export async function filterRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  app.get("/api/filters", async () => effectiveFilters(deps.registry, deps.state).map(filterView));

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
      deps.events.emit({ type: "state.changed", filter: name, change: { enabled: action === "enable" } });
      req.log.info({ filter: name, action }, "filter switched");
      const updated = effectiveFilters(deps.registry, deps.state).find((f) => f.name === name);
      return updated ? filterView(updated) : reply.code(404).send({ error: `filter ${name} went away` });
    });
  }
}
