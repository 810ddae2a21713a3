import type { FastifyInstance } from "fastify";
import type { AdminDeps } from "../admin-deps.ts";

/** The operator dashboard served at `/`. */
export async function dashboardRoutes(_app: FastifyInstance, _deps: AdminDeps): Promise<void> {
  // Filled in by the dashboard work (issue 4).
}
