import type { FastifyInstance } from "fastify";
import { effectiveFilters } from "../../registry/effective.ts";
import { describeClients } from "../../xds/client-status.ts";
import { EXTENSION_CONFIG, shortName } from "../../xds/type-urls.ts";
import type { AdminDeps } from "../admin-deps.ts";
import { ControlPlaneMetrics } from "../metrics.ts";
import { addHealthMetrics } from "../../health/health-metrics.ts";

/** Read-only status: health, connected Envoys, the served snapshot, metrics. */
export async function statusRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const anyObject = { type: "object", additionalProperties: true } as const;
  app.get("/healthz", {
    schema: { summary: "Liveness and readiness (503 until the first build of the filters dir is done)", tags: ["status"], response: { 200: { type: "object", properties: { status: { type: "string" } } }, 503: { type: "object", properties: { status: { type: "string" } } } } },
  }, async (_req, reply) => {
    const ready = deps.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ok" : "starting" });
  });

  app.get("/api/clients", {
    schema: {
      summary: "Connected Envoys: node, streams (address, connect time), per type sent/ACKed version and last NACK, and the module each filter runs",
      tags: ["status"],
      response: { 200: { type: "array", items: anyObject } },
    },
  }, async () => {
    const views = describeClients(deps.clients.list(), (name, version) => deps.resourceAt(EXTENSION_CONFIG, name, version)?.moduleSha256);
    // Which replica each Envoy is connected to: this one (GET /api/replicas lists the others').
    const replica = deps.replica?.id;
    return replica === undefined ? views : views.map((v) => ({ ...v, replica }));
  });

  app.get("/api/replicas", {
    schema: {
      summary: "Control plane replicas (CP_STORE=etcd): id, addresses, which one builds, and the Envoys connected to each; a single control plane lists itself",
      tags: ["status"],
      response: {
        200: { type: "object", properties: { self: { type: "string" }, replicas: { type: "array", items: anyObject } } },
        503: { type: "object", properties: { error: { type: "string" } } },
      },
    },
  }, async (_req, reply) => {
    const self = deps.replica?.id ?? "local";
    if (deps.replica?.directory) {
      try {
        return { self, replicas: await deps.replica.directory() };
      } catch (err) {
        return reply.code(503).send({ error: (err as Error).message });
      }
    }
    const envoys = [...new Set(deps.clients.list().map((c) => c.nodeId))].sort();
    return { self, replicas: [{ id: self, builder: deps.replica?.builder() ?? true, envoys }] };
  });

  // What Envoys are served: per type, the version and each resource's content hash. Two
  // replicas fed the same filters and state answer identically.
  app.get("/api/snapshot", {
    schema: { summary: "The default group's snapshot: per type, version and each resource's content hash", tags: ["status"], response: { 200: anyObject, 503: { type: "object", properties: { error: { type: "string" } } } } },
  }, async (_req, reply) => {
    const snapshot = deps.snapshot();
    if (!snapshot) return reply.code(503).send({ error: "no snapshot yet (initial build running)" });
    return Object.fromEntries([...snapshot.types].map(([typeUrl, t]) => [typeUrl, {
      short: shortName(typeUrl),
      version: t.version,
      resources: Object.fromEntries([...t.resources.values()].map((r) => [r.name, r.version])),
    }]));
  });

  app.get("/api/health", {
    schema: {
      summary: "Runtime health: the auto-disable policy, Envoys whose stats reach the control plane, and each filter's runtime failures and automatic response",
      tags: ["status"],
      response: { 200: anyObject },
    },
  }, async () => {
    const h = deps.health;
    if (!h) return { policy: null, statsReporters: [], filters: {} };
    return {
      policy: { autoDisableAfter: h.policy.threshold, windowSeconds: h.policy.windowMs / 1000 },
      statsReporters: h.statsReporters(),
      // Stats from streams not bound to their node's xDS connection: dropped (health/metrics-service.ts).
      droppedStats: h.droppedStats(),
      // Envoy counts runtime failures per plugin only with FAIL_RELOAD: other filters are not watched.
      filters: Object.fromEntries(effectiveFilters(deps.registry, deps.state).map((f) => [f.name, { ...h.health(f.name), watched: f.failPolicy === "reload" }])),
    };
  });

  // One prom-client Registry per admin app, fed by the event bus from now on (see metrics.ts).
  const metrics = new ControlPlaneMetrics(deps);
  app.addHook("onClose", async () => metrics.close());
  // Runtime failures and automatic responses (controlplane/health), on the same registry.
  const stopHealthMetrics = addHealthMetrics(metrics.registry, deps.events);
  app.addHook("onClose", async () => stopHealthMetrics());
  app.get("/metrics", {
    schema: {
      summary: "Prometheus metrics",
      description: "Builds, xDS pushes/ACKs/NACKs by type, push-to-ACK and save-to-ACK latencies, module bytes served, Envoys, streams, filters. Each metric is described in controlplane/http/metrics.ts.",
      response: { 200: { description: "Prometheus text exposition format 0.0.4", content: { "text/plain": { schema: { type: "string" } } } } },
    },
  }, async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
}
