import net from "node:net";
import type { FastifyInstance } from "fastify";
import { hostPortText } from "../../routes/route-table.ts";
import type { AdminDeps } from "../admin-deps.ts";

const str = { type: "string" } as const;
const nullableStr = { type: ["string", "null"] } as const;
const match = {
  type: "object",
  description: "Exactly one of prefix, path (exact) and regex (RE2, whole path); headers narrow it",
  properties: {
    prefix: str, path: str, regex: str,
    headers: {
      type: "array",
      items: {
        type: "object",
        properties: { name: str, exact: str, prefix: str, regex: str, present: { type: "boolean" } },
        required: ["name"],
      },
    },
  },
} as const;
const route = {
  type: "object",
  properties: {
    name: str, match, upstream: str,
    timeoutMs: { type: "integer", description: "Envoy's route timeout (0: none); absent: Envoy's default (15 s)" },
    retries: { type: "object", properties: { retryOn: str, numRetries: { type: "integer" } }, required: ["retryOn", "numRetries"] },
  },
  required: ["name", "match", "upstream"],
} as const;
const routesView = {
  type: "object",
  properties: {
    file: { ...nullableStr, description: "CP_ROUTES_FILE; null: none, every request goes to CP_UPSTREAM" },
    loadedAt: { ...str, description: "When the routes shown were loaded (ISO 8601)" },
    error: {
      type: ["object", "null"],
      description: "The last edit of the file, when it was refused (the routes shown keep serving); null when the file is good",
      properties: { message: str, line: { type: ["integer", "null"] }, at: str },
      required: ["message", "line", "at"],
    },
    upstreams: {
      type: "array",
      items: {
        type: "object",
        properties: {
          name: str, endpoints: { type: "array", items: str },
          discovery: {
            type: "string", enum: ["eds", "dns"], description: "eds: IP endpoints sent over EDS; dns: Envoy resolves (STRICT_DNS)",
          },
          connectTimeoutMs: { type: "integer" },
        },
        required: ["name", "endpoints", "discovery", "connectTimeoutMs"],
      },
    },
    virtualHosts: {
      type: "array",
      items: {
        type: "object",
        properties: { name: str, domains: { type: "array", items: str }, routes: { type: "array", items: route } },
        required: ["name", "domains", "routes"],
      },
    },
  },
  required: ["file", "loadedAt", "error", "upstreams", "virtualHosts"],
} as const;

/** GET /api/routes: the routes in force, where they come from, and a refused edit's error. */
export async function routesRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const view = deps.routes;
  if (!view) return;
  app.get("/api/routes", {
    schema: {
      summary: "The routes Envoy is served: upstreams, virtual hosts and their routes; "
        + "the routes file, when it was loaded, and why its last edit was refused",
      tags: ["routes"],
      response: { 200: routesView },
    },
  }, async () => {
    const v = view();
    return {
      file: v.file,
      loadedAt: v.loadedAt,
      error: v.error,
      upstreams: v.table.upstreams.map((u) => ({
        name: u.name, endpoints: u.endpoints.map(hostPortText), discovery: net.isIP(u.endpoints[0]!.host) !== 0 ? "eds" : "dns",
        connectTimeoutMs: u.connectTimeoutMs,
      })),
      virtualHosts: v.table.virtualHosts,
    };
  });
}
