// IPC between bench/xds-fanout.ts (the simulated Envoys) and bench/support/fanout-server.ts (the
// control plane under test, in its own process so client memory never shows in its RSS).

/** A clock both processes share: wall-clock origin of the process plus a monotonic offset (ms). */
export const sharedNow = (): number => performance.timeOrigin + performance.now();

export type ServerCommand =
  | { id: number; cmd: "rss" }
  | { id: number; cmd: "change" }
  | { id: number; cmd: "converged"; version: string; expected: number; timeoutMs: number }
  | { id: number; cmd: "exit" };

export interface ReadyMessage {
  type: "ready";
  port: number;
  pid: number;
  filters: string[];
  /** ECDS type version of the initial snapshot. */
  ecdsVersion: string;
  /** Per ECDS resource, its version in the initial snapshot. */
  resourceVersions: Record<string, string>;
  gcAvailable: boolean;
  /** Which server module was benchmarked (xds-server.ts or ads-server.ts). */
  serverModule: string;
}

export interface RssReply {
  id: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  gcAvailable: boolean;
  streams: number;
}

export interface ChangeReply {
  id: number;
  /** sharedNow() just before SnapshotCache.set (the publish). */
  publishedAt: number;
  /** How long building + encoding the new snapshot took (before publishing). */
  encodeMs: number;
  /** How long SnapshotCache.set ran synchronously (every stream's watcher, i.e. the fan-out loop). */
  fanoutMs: number;
  changedTypes: string[];
  ecdsVersion: string;
  filter: string;
  resourceVersion: string;
}

export interface ConvergedReply {
  id: number;
  ok: boolean;
  /** sharedNow() when the registry first showed every stream ACKing `version`. */
  at: number;
  streams: number;
  acked: number;
}

export type ServerMessage = ReadyMessage | RssReply | ChangeReply | ConvergedReply | { id: number; ok: true };
