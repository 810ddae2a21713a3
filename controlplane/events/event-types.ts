import type { ControlPlaneEvent, ControlPlaneEventBody } from "./bus.ts";

export type EventType = ControlPlaneEventBody["type"];

// A Record over the union: adding an event type to bus.ts without listing it here fails tsc.
const KNOWN: Record<EventType, true> = {
  "build.started": true,
  "build.succeeded": true,
  "build.failed": true,
  "filter.removed": true,
  "state.changed": true,
  "snapshot.published": true,
  "xds.pushed": true,
  "xds.acked": true,
  "xds.nacked": true,
  "xds.cache_miss_resend": true,
  "client.connected": true,
  "client.disconnected": true,
  "module.served": true,
  "health.failures": true,
  "health.action": true,
  "health.stuck": true,
};

/** Every event type the bus carries, for validation and documentation. */
export const EVENT_TYPES: readonly EventType[] = Object.keys(KNOWN) as EventType[];

export type EventFilter = (event: ControlPlaneEvent) => boolean;

/**
 * Parses a `types` list such as `build.succeeded,xds.acked` or `build.*` (a prefix ending in
 * `.*` selects a family). Returns the filter, or an error message naming what is unknown.
 * An absent or empty list selects everything.
 */
export function parseTypeFilter(list: string | undefined): EventFilter | { error: string } {
  const items = (list ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) return () => true;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const unknown: string[] = [];
  for (const item of items) {
    if (item.endsWith(".*")) {
      const prefix = item.slice(0, -1); // keeps the dot: "build."
      if (EVENT_TYPES.some((t) => t.startsWith(prefix))) prefixes.push(prefix);
      else unknown.push(item);
    } else if ((EVENT_TYPES as readonly string[]).includes(item)) {
      exact.add(item);
    } else {
      unknown.push(item);
    }
  }
  if (unknown.length > 0) return { error: `unknown event type(s): ${unknown.join(", ")} (known: ${EVENT_TYPES.join(", ")}; a family as build.*)` };
  return (event) => exact.has(event.type) || prefixes.some((p) => event.type.startsWith(p));
}
