// The live event timeline: GET /api/events (Server-Sent Events: `id:`, `event: <type>`,
// `data: <json>`). EventSource when no token is set; EventSource cannot send an
// Authorization header, so with a token the same stream is read through fetch.

import type { ControlPlaneEvent } from "../../events/bus.ts";
import { EVENT_TYPES } from "../../events/event-types.ts";
import { shortName } from "../../xds/type-urls.ts";
import { authHeaders, getToken } from "./api.ts";
import { clock, h } from "./dom.ts";

const EVENTS_PATH = "/api/events";
const MAX_ENTRIES = 200;
/** After the endpoint refused the stream (404, 401, ...): try again this much later. */
const RETRY_UNAVAILABLE_MS = 15_000;

/** Sent (without an id) when a replay asked for more than the server still holds. */
const TRUNCATED = "replay.truncated";

export type TimelineEvent = ControlPlaneEvent | { type: typeof TRUNCATED; lost: number; seq?: undefined; at?: undefined };

export type StreamState = "connecting" | "live" | "polling";

export interface EventStreamHandlers {
  event(e: TimelineEvent): void;
  state(state: StreamState, detail: string): void;
}

/** Opens the stream and keeps it open; returns a function that closes it for good. */
export function openEventStream(on: EventStreamHandlers): () => void {
  let closed = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stop: () => void = () => undefined;
  // The page starts with the events the server still holds; a reconnect resumes after the
  // last one seen (EventSource sends Last-Event-ID by itself, which the server prefers).
  let lastSeq = 0;

  const deliver = (data: string, type: string): void => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return; // not an event of ours
    }
    if (type === TRUNCATED) {
      on.event({ type: TRUNCATED, lost: Number(parsed.lost) || 0 });
      return;
    }
    if (typeof parsed.seq === "number") lastSeq = parsed.seq;
    on.event({ ...parsed, type: typeof parsed.type === "string" ? parsed.type : type } as ControlPlaneEvent);
  };
  const unavailable = (why: string): void => {
    stop();
    on.state("polling", `live events unavailable (${why}); polling`);
    if (!closed) retry = setTimeout(connect, RETRY_UNAVAILABLE_MS);
  };

  function connect(): void {
    if (closed) return;
    on.state("connecting", "connecting to /api/events…");
    const url = `${EVENTS_PATH}?since=${lastSeq}`;
    stop = getToken() ? viaFetch(url, deliver, on, unavailable) : viaEventSource(url, deliver, on, unavailable);
  }
  connect();
  return () => {
    closed = true;
    clearTimeout(retry);
    stop();
  };
}

type Deliver = (data: string, type: string) => void;

function viaEventSource(url: string, deliver: Deliver, on: EventStreamHandlers, unavailable: (why: string) => void): () => void {
  const source = new EventSource(url);
  // Named events only reach listeners registered by name.
  for (const type of [...EVENT_TYPES, TRUNCATED]) source.addEventListener(type, (m) => deliver((m as MessageEvent<string>).data, type));
  source.onmessage = (m: MessageEvent<string>) => deliver(m.data, "message");
  source.onopen = () => on.state("live", "live");
  source.onerror = () => {
    // CONNECTING: the browser reconnects by itself. CLOSED: the server refused (not 200 or not
    // text/event-stream), e.g. no such endpoint yet or a token is needed.
    if (source.readyState === EventSource.CLOSED) unavailable("stream refused");
    else on.state("connecting", "reconnecting…");
  };
  return () => source.close();
}

function viaFetch(url: string, deliver: Deliver, on: EventStreamHandlers, unavailable: (why: string) => void): () => void {
  const abort = new AbortController();
  let lastId = "";
  let backoff = 500;
  const run = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      try {
        const res = await fetch(url, {
          headers: { ...authHeaders(), accept: "text/event-stream", ...(lastId ? { "last-event-id": lastId } : {}) },
          signal: abort.signal,
          cache: "no-store",
        });
        if (!res.ok || !res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
          unavailable(`HTTP ${res.status}`);
          return;
        }
        on.state("live", "live");
        backoff = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = sseParser((id) => (lastId = id), deliver);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser(value);
        }
      } catch {
        if (abort.signal.aborted) return;
        // network error or the stream broke: reconnect below, resuming after lastId
      }
      on.state("connecting", "reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  };
  void run();
  return () => abort.abort();
}

/** The text/event-stream format, chunk by chunk (https://html.spec.whatwg.org/#event-stream-interpretation). */
export function sseParser(onId: (id: string) => void, dispatch: Deliver): (chunk: string) => void {
  let buffer = "";
  let data: string[] = [];
  let type = "";
  return (chunk) => {
    buffer += chunk;
    for (let nl = buffer.search(/\r\n|\r|\n/); nl >= 0; nl = buffer.search(/\r\n|\r|\n/)) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (data.length > 0) dispatch(data.join("\n"), type || "message");
        data = [];
        type = "";
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id") onId(value);
    }
  };
}

/** One line of text per event, and whether it is good or bad news. */
export function describe(e: TimelineEvent): { kind: "good" | "bad" | "info"; text: string } {
  const sha = (s: string) => s.slice(0, 12);
  switch (e.type) {
    case "build.started": return { kind: "info", text: `${e.filter}: building` };
    case "build.succeeded": return { kind: "good", text: `${e.filter}: built ${sha(e.sha256)} in ${e.buildMs} ms (${e.bytes} bytes)` };
    case "build.failed": return { kind: "bad", text: `${e.filter}: ${(e.error.split("\n")[0] ?? "").replace(`${e.filter}: `, "")}` };
    case "filter.removed": return { kind: "info", text: `${e.filter}: removed` };
    case "state.changed": return { kind: "info", text: `${e.filter}: ${Object.entries(e.change).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")}` };
    case "snapshot.published": return { kind: "info", text: `snapshot published (${e.changed.map(shortName).join(", ") || "no change"})` };
    case "xds.pushed": return { kind: "info", text: `${e.node}: sent ${shortName(e.typeUrl)} ${sha(e.version)} (${e.resources.length} resource${e.resources.length === 1 ? "" : "s"})` };
    case "xds.acked": return { kind: "good", text: `${e.node}: ACK ${shortName(e.typeUrl)} ${sha(e.version)}` };
    case "xds.nacked": return { kind: "bad", text: `${e.node}: NACK ${shortName(e.typeUrl)} ${sha(e.version)}: ${e.message}` };
    case "xds.cache_miss_resend": return { kind: "info", text: `${e.node}: module fetched, config re-sent (${e.shas.map(sha).join(", ")})` };
    case "client.connected": return { kind: "good", text: `${e.node} (cluster ${e.cluster}) connected from ${e.peer}, stream #${e.stream}` };
    case "client.disconnected": return { kind: "bad", text: `${e.node} (cluster ${e.cluster}) disconnected, stream #${e.stream}` };
    case "module.served": return { kind: "info", text: `${e.node}: downloaded module ${sha(e.sha256)} (${e.bytes} bytes)` };
    case "health.failures": return { kind: "bad", text: `${e.node}: ${e.filter}'s VM crashed ${e.count === 1 ? "once" : `${e.count} times`} (${e.total} in the window)` };
    case "health.action": return { kind: "bad", text: `${e.filter}: ${e.action === "disabled" ? "disabled" : `rolled back to ${sha(e.sha256 ?? "")}`} automatically: ${e.reason}` };
    case "health.stuck": return { kind: "bad", text: `${e.node}: ${e.signal === "watchdog" ? `${e.worker ?? "a worker"} stuck (Envoy's watchdog)` : `no stats for ${Math.round((e.silentMs ?? 0) / 1000)} s while connected: a worker is stuck`}; a filter may never return from a callback (${e.filters.join(", ") || "no filters"}); only a restart of that Envoy helps` };
    case TRUNCATED: return { kind: "info", text: `${e.lost} earlier event${e.lost === 1 ? " is" : "s are"} no longer held by the server` };
    default: return { kind: "info", text: JSON.stringify(e) };
  }
}

/** Newest first, at most MAX_ENTRIES. */
export function addToTimeline(list: HTMLOListElement, e: TimelineEvent): void {
  const { kind, text } = describe(e);
  const at = typeof e.at === "string" ? e.at : new Date().toISOString();
  list.prepend(h("li", { "data-type": e.type, "data-kind": kind, "data-seq": e.seq },
    h("span", { class: "muted mono", title: at }, clock(at)),
    h("span", { class: "type" }, e.type),
    h("span", { class: "text" }, text),
  ));
  while (list.childElementCount > MAX_ENTRIES) list.lastElementChild?.remove();
}
