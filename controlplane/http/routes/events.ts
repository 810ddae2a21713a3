import type { FastifyInstance } from "fastify";
import { EVENT_TYPES, parseTypeFilter } from "../../events/event-types.ts";
import { HEARTBEAT_MS, openEventStream, type EventStream } from "../../events/sse.ts";
import type { AdminDeps } from "../admin-deps.ts";

export interface EventRouteOptions {
  heartbeatMs?: number;
  maxBufferedBytes?: number;
}

const SEQ_PATTERN = "^[0-9]{1,15}$";

/**
 * GET /api/events: live events as Server-Sent Events, so a reload can be followed from the save
 * to each Envoy's ACK. Each event is `id: <seq>`, `event: <type>`, `data: <the event as JSON>`.
 * `Last-Event-ID` (what an EventSource sends when it reconnects) or `?since=<seq>` replays the
 * held events after that sequence number first; `?types=a,b` (or a family, `xds.*`) filters.
 * A comment line every 15 s keeps an idle stream open.
 */
export function eventRoutesWith(options: EventRouteOptions = {}) {
  return async function eventRoutes(app: FastifyInstance, deps: Pick<AdminDeps, "events">): Promise<void> {
    const open = new Set<EventStream>();
    // Streams never end by themselves: end them, or closing the server would wait for clients.
    app.addHook("preClose", async () => {
      for (const s of open) s.close();
    });

    app.get<{ Querystring: { since?: string; types?: string }; Headers: { "last-event-id"?: string } }>("/api/events", {
      schema: {
        summary: "Live events (Server-Sent Events)",
        description: `text/event-stream. Event types: ${EVENT_TYPES.join(", ")}. Each event: \`id: <seq>\`, \`event: <type>\`, \`data: <JSON with seq, at, type and the fields of that type>\`. A \`replay.truncated\` event (no id) says the replay buffer no longer held every event asked for. Heartbeat comments every ${HEARTBEAT_MS / 1000} s.`,
        querystring: {
          type: "object",
          properties: {
            since: { type: "string", pattern: SEQ_PATTERN, description: "replay held events with a greater sequence number first (Last-Event-ID takes precedence)" },
            types: { type: "string", description: "comma-separated event types to send, or families such as build.* (default: all)" },
          },
          additionalProperties: false,
        },
        headers: {
          type: "object",
          properties: { "last-event-id": { type: "string", pattern: SEQ_PATTERN, description: "the last event id received (sent by an EventSource on reconnect)" } },
        },
        response: {
          200: { description: "an endless text/event-stream", content: { "text/event-stream": { schema: { type: "string" } } } },
          400: { type: "object", properties: { error: { type: "string" } }, required: ["error"] },
        },
      },
    }, async (req, reply) => {
      const filter = parseTypeFilter(req.query.types);
      if ("error" in filter) return reply.code(400).send({ error: filter.error });
      const header = req.headers["last-event-id"];
      // Both are validated as digits above (the admin app does not coerce query strings).
      const raw = header ?? req.query.since;
      const since = raw === undefined ? undefined : Number(raw);
      // From here on the response is ours, not fastify's: it must not try to send one too.
      reply.hijack();
      const stream = openEventStream(deps.events, reply.raw, {
        since,
        filter,
        heartbeatMs: options.heartbeatMs,
        maxBufferedBytes: options.maxBufferedBytes,
        headers: reply.getHeaders(),
      });
      open.add(stream);
      void stream.closed.then(() => open.delete(stream));
      req.log.debug({ since, types: req.query.types }, "event stream opened");
      return reply;
    });
  };
}

export const eventRoutes = eventRoutesWith();
