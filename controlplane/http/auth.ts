import type { FastifyInstance } from "fastify";

/** Bearer-token protection of the admin API (issue 4); no token, no check. */
export function installAuth(_app: FastifyInstance, _token: string | undefined): void {
  // Filled in by the security work (issue 4).
}
