import type { FastifyInstance } from "fastify";
import type { AdminDeps } from "../admin-deps.ts";

/** Live events as Server-Sent Events (GET /api/events). */
export async function eventRoutes(_app: FastifyInstance, _deps: AdminDeps): Promise<void> {
  // Filled in by the events work (issue 4).
}
