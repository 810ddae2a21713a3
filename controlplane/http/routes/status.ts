import type { FastifyInstance } from "fastify";
import { describeClients } from "../../xds/client-status.ts";
import { shortName } from "../../xds/type-urls.ts";
import type { AdminDeps } from "../admin-deps.ts";
import { ControlPlaneMetrics } from "../metrics.ts";

/** Read-only status: health, connected Envoys, the served snapshot, metrics. */
export async function statusRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  app.get("/healthz", async (_req, reply) => {
    const ready = deps.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ok" : "starting" });
  });

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

  // One prom-client Registry per admin app, fed by the event bus from now on (see metrics.ts).
  const metrics = new ControlPlaneMetrics(deps);
  app.addHook("onClose", async () => metrics.close());
  app.get("/metrics", {
    schema: {
      summary: "Prometheus metrics",
      description: "Builds, xDS pushes/ACKs/NACKs by type, push-to-ACK and save-to-ACK latencies, module bytes served, Envoys, streams, filters. Each metric is described in controlplane/http/metrics.ts.",
      response: { 200: { description: "Prometheus text exposition format 0.0.4", content: { "text/plain": { schema: { type: "string" } } } } },
    },
  }, async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
}
