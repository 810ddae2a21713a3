import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { ControlPlaneEvent, EventBus } from "./bus.ts";
import type { EventFilter } from "./event-types.ts";

/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
export const HEARTBEAT_MS = 15_000;
/**
 * A client this far behind (bytes queued on its socket) is cut off rather than buffered without
 * bound; an EventSource reconnects by itself, with Last-Event-ID, and replays what it missed.
 */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** What an EventSource waits before reconnecting (sent once, as `retry:`). */
const RETRY_MS = 2000;

/** One event in SSE framing: `id` is the bus sequence number, `event` the type, `data` the JSON. */
export function formatEvent(event: ControlPlaneEvent): string {
  // JSON.stringify never emits a raw newline, so the data fits on one `data:` line.
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export interface EventStreamOptions {
  /** Replay held events after this sequence number first (Last-Event-ID / ?since). */
  since?: number;
  filter: EventFilter;
  heartbeatMs?: number;
  maxBufferedBytes?: number;
  /** Extra response headers (e.g. ones fastify hooks already set). */
  headers?: Record<string, string | number | readonly string[] | undefined>;
}

export interface EventStream {
  /** Ends the response (server shutdown); the client sees the stream close. */
  close(): void;
  readonly closed: Promise<void>;
}

/**
 * Streams the bus to one HTTP response as Server-Sent Events: the replay first, then live
 * events, then heartbeats while idle. The subscription ends with the response, whoever ends it.
 * Replay and subscription happen in one synchronous step, so no event falls between them.
 */
export function openEventStream(bus: EventBus, res: ServerResponse, opts: EventStreamOptions): EventStream {
  const maxBuffered = opts.maxBufferedBytes ?? MAX_BUFFERED_BYTES;
  const extra: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(opts.headers ?? {})) if (value !== undefined) extra[name] = typeof value === "object" ? [...value] : value;
  res.writeHead(200, {
    ...extra,
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    // nginx and similar buffer responses unless told not to.
    "x-accel-buffering": "no",
  });
  let done = false;
  let unsubscribe: () => void = () => undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const cleanup = (): void => {
    if (done) return;
    done = true;
    unsubscribe();
    clearInterval(heartbeat);
    resolveClosed();
  };
  const write = (chunk: string): void => {
    if (done || res.destroyed || res.writableEnded) return;
    res.write(chunk);
    if (res.writableLength > maxBuffered) {
      // Too slow: drop it (it resumes from its Last-Event-ID) instead of holding memory for it.
      cleanup();
      res.destroy();
    }
  };
  res.on("close", cleanup);

  write(`retry: ${RETRY_MS}\n\n`);
  let lastSent = 0;
  if (opts.since !== undefined) {
    const held = bus.since(opts.since);
    const first = held[0];
    if (first && first.seq > opts.since + 1) {
      // The replay buffer no longer holds everything the client missed: say so (no `id:`, so the
      // client's Last-Event-ID is untouched).
      write(`event: replay.truncated\ndata: ${JSON.stringify({ since: opts.since, firstHeld: first.seq, lost: first.seq - opts.since - 1 })}\n\n`);
    }
    for (const event of held) {
      if (opts.filter(event)) write(formatEvent(event));
      lastSent = event.seq;
    }
  }
  if (!done) {
    unsubscribe = bus.subscribe((event) => {
      if (event.seq <= lastSent || !opts.filter(event)) return;
      write(formatEvent(event));
    });
    heartbeat = setInterval(() => write(`: heartbeat ${new Date().toISOString()}\n\n`), opts.heartbeatMs ?? HEARTBEAT_MS);
    heartbeat.unref();
  }
  return {
    close() {
      cleanup();
      if (!res.writableEnded) res.end();
    },
    closed,
  };
}
