/**
 * Checks, before anything starts, that the ports `npm run dev` needs are free on 127.0.0.1, so a
 * busy port is one line naming it instead of a half-started stack and a stack trace.
 */
import net from "node:net";

export interface WantedPort {
  port: number;
  /** e.g. "admin API and dashboard (--admin-port / CP_ADMIN_PORT)" */
  what: string;
}

/** Resolves with the error code of binding host:port (e.g. "EADDRINUSE"), or null when it is free. */
export function bindError(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    // exclusive: no sharing with a cluster primary; Node sets SO_REUSEADDR but not SO_REUSEPORT,
    // so a listener of any other process on this port (0.0.0.0 included) makes this fail.
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

/** The wanted ports (port 0 skipped) that cannot be bound on `host`, with the reason. */
export async function busyPorts(host: string, wanted: readonly WantedPort[]): Promise<(WantedPort & { code: string })[]> {
  const busy: (WantedPort & { code: string })[] = [];
  for (const want of wanted) {
    if (want.port === 0) continue;
    const code = await bindError(host, want.port);
    if (code !== null) busy.push({ ...want, code });
  }
  return busy;
}

/** One line for the user: "port 19000 (admin API ...) is already in use on 127.0.0.1". */
export function describeBusy(host: string, busy: readonly (WantedPort & { code: string })[]): string {
  const parts = busy.map((b) => `${b.port} (${b.what})${b.code === "EADDRINUSE" ? "" : `: ${b.code}`}`);
  const verb = busy.length === 1 ? "port" : "ports";
  const inUse = busy.every((b) => b.code === "EADDRINUSE") ? "already in use" : "not available";
  return `${verb} ${parts.join(", ")} ${busy.length === 1 ? "is" : "are"} ${inUse} on ${host}: stop what uses ` +
    `${busy.length === 1 ? "it" : "them"} or pick other ports (npm run dev -- --help)`;
}
