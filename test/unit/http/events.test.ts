import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import Fastify from "fastify";
import pino from "pino";
import { createAdminApi } from "../../../controlplane/http/admin-api.ts";
import { eventRoutesWith } from "../../../controlplane/http/routes/events.ts";
import { EventBus, type ControlPlaneEvent } from "../../../controlplane/events/bus.ts";
import { formatEvent } from "../../../controlplane/events/sse.ts";
import { FilterRegistry } from "../../../controlplane/registry/filter-registry.ts";
import { OperatorState } from "../../../controlplane/state/operator-state.ts";
import { ClientRegistry } from "../../../controlplane/xds/client-status.ts";
import { json, openSse, type SseStream } from "../../support/sse.ts";
import { waitFor } from "../../support/wait.ts";

/** Collects the admin app's log lines, to prove fastify never tried to answer a hijacked request. */
function captureLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}

function adminApp(bus: EventBus, log: pino.Logger) {
  return createAdminApi({
    registry: new FilterRegistry(),
    state: new OperatorState(path.join(os.tmpdir(), `wasm-xds-events-${process.pid}-${Math.random()}.json`)),
    clients: new ClientRegistry(bus),
    events: bus,
    snapshot: () => undefined,
    resourceAt: () => undefined,
    ready: () => true,
  }, log);
}

const build = (bus: EventBus, filter: string): void => bus.emit({ type: "build.started", filter });
const data = (s: SseStream): ControlPlaneEvent[] => s.messages.filter((m) => m.id !== undefined).map((m) => json<ControlPlaneEvent>(m));

describe("GET /api/events (Server-Sent Events)", () => {
  const bus = new EventBus();
  const { log, lines } = captureLog();
  const app = adminApp(bus, log);
  let base: string;
  /** Listeners before any stream opens (the metrics of this app subscribe too). */
  let idle: number;
  const open: SseStream[] = [];
  const sse = async (query = "", headers: Record<string, string> = {}): Promise<SseStream> => {
    const s = await openSse(`${base}/api/events${query}`, headers);
    open.push(s);
    return s;
  };

  before(async () => {
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    idle = bus.subscriberCount;
  });
  after(async () => {
    for (const s of open) s.close();
    await app.close();
  });

  it("frames each event as id/event/data with the bus sequence number, live", async () => {
    const s = await sse();
    assert.equal(s.status, 200);
    assert.match(String(s.headers["content-type"]), /^text\/event-stream/);
    assert.equal(s.headers["cache-control"], "no-cache, no-transform");
    await waitFor(() => bus.subscriberCount === idle + 1, { what: "the stream to subscribe", timeoutMs: 5000 });
    bus.emit({ type: "build.succeeded", filter: "f", sha256: "a".repeat(64), buildMs: 12, bytes: 345 });
    const m = await s.until(() => s.messages.find((x) => x.event === "build.succeeded"), "build.succeeded");
    const e = json<ControlPlaneEvent & { type: "build.succeeded" }>(m);
    assert.equal(m.id, String(e.seq));
    assert.equal(e.filter, "f");
    assert.equal(e.bytes, 345);
    assert.match(e.at, /^\d{4}-\d\d-\d\dT/);
    assert.ok(s.raw().includes(`id: ${e.seq}\nevent: build.succeeded\ndata: {`), s.raw());
    s.close();
  });

  it("replays what came after Last-Event-ID, in order, then goes on live", async () => {
    for (const f of ["r1", "r2", "r3", "r4"]) build(bus, f);
    const held = bus.since(0).filter((e) => e.type === "build.started" && e.filter.startsWith("r"));
    const lastSeen = held[1]!.seq; // the client had r1 and r2
    const s = await sse("", { "last-event-id": String(lastSeen) });
    const replayed = await s.until(() => {
      const got = data(s);
      return got.some((e) => e.type === "build.started" && e.filter === "r4") && got;
    }, "the replay up to r4");
    assert.deepEqual(replayed.map((e) => e.seq), bus.since(lastSeen).map((e) => e.seq), "exactly the events after Last-Event-ID");
    assert.ok(replayed.every((e, i) => i === 0 || e.seq > replayed[i - 1]!.seq), "in sequence order");
    build(bus, "live");
    const live = await s.until(() => data(s).find((e) => e.type === "build.started" && e.filter === "live"), "the live event after the replay");
    assert.equal(live.seq, replayed.at(-1)!.seq + 1, "no gap and no duplicate between replay and live");
    s.close();
  });

  it("?since= replays too, and Last-Event-ID wins over it (an EventSource reconnecting keeps its URL)", async () => {
    build(bus, "s1");
    const seq = bus.since(0).at(-1)!.seq;
    build(bus, "s2");
    const bySince = await sse(`?since=${seq - 1}`);
    const a = await bySince.until(() => data(bySince).length >= 2 && data(bySince), "replay by ?since");
    assert.deepEqual(a.slice(0, 2).map((e) => e.seq), [seq, seq + 1]);
    const both = await sse(`?since=0`, { "last-event-id": String(seq) });
    const b = await both.until(() => data(both).length >= 1 && data(both), "replay by Last-Event-ID");
    assert.equal(b[0]!.seq, seq + 1, "Last-Event-ID, not ?since=0, decided where the replay starts");
    bySince.close();
    both.close();
  });

  it("?types= filters the replay and the live events, families included", async () => {
    const from = bus.since(0).at(-1)!.seq;
    bus.emit({ type: "build.started", filter: "t" });
    bus.emit({ type: "xds.acked", node: "n", stream: 1, typeUrl: "x", version: "v" });
    bus.emit({ type: "snapshot.published", changed: [] });
    const s = await sse(`?since=${from}&types=xds.*,snapshot.published`);
    bus.emit({ type: "build.failed", filter: "t", error: "e", buildMs: 1 });
    bus.emit({ type: "xds.pushed", node: "n", stream: 1, typeUrl: "x", version: "v2", nonce: "1", resources: [] });
    const got = await s.until(() => data(s).length >= 3 && data(s), "three matching events");
    assert.deepEqual(got.map((e) => e.type), ["xds.acked", "snapshot.published", "xds.pushed"]);
    s.close();
  });

  it("answers 400, as JSON, for an unknown type or a malformed Last-Event-ID / since", async () => {
    const unknown = await app.inject({ method: "GET", url: "/api/events?types=build.started,nope" });
    assert.equal(unknown.statusCode, 400);
    assert.match((unknown.json() as { error: string }).error, /unknown event type\(s\): nope/);
    const family = await app.inject({ method: "GET", url: "/api/events?types=nope.*" });
    assert.equal(family.statusCode, 400);
    const badId = await app.inject({ method: "GET", url: "/api/events", headers: { "last-event-id": "abc" } });
    assert.equal(badId.statusCode, 400);
    const badSince = await app.inject({ method: "GET", url: "/api/events?since=-1" });
    assert.equal(badSince.statusCode, 400);
  });

  it("says so when the replay buffer no longer holds everything asked for", async () => {
    const before = bus.since(0).at(-1)!.seq;
    for (let i = 0; i < 600; i++) bus.emit({ type: "filter.removed", filter: `x${i}` });
    const s = await sse(`?since=${before}&types=filter.removed`);
    const truncated = await s.until(() => s.messages.find((m) => m.event === "replay.truncated"), "replay.truncated");
    assert.equal(truncated.id, undefined, "a notice, not an event with a sequence number");
    const info = json<{ since: number; firstHeld: number; lost: number }>(truncated);
    assert.equal(info.since, before);
    assert.equal(info.firstHeld, bus.since(0)[0]!.seq);
    assert.equal(info.lost, info.firstHeld - before - 1);
    const replayed = await s.until(() => data(s).length === 500 && data(s), "the 500 held events");
    assert.equal(replayed[0]!.seq, info.firstHeld);
    s.close();
  });

  it("unsubscribes when the client disconnects", async () => {
    const streams = await Promise.all([sse(), sse(), sse()]);
    await waitFor(() => bus.subscriberCount === idle + 3, { what: "three subscriptions", timeoutMs: 5000 });
    for (const s of streams) s.close();
    await waitFor(() => bus.subscriberCount === idle, { what: `subscriptions to go back to ${idle} (now ${bus.subscriberCount})`, timeoutMs: 5000 });
    // Emitting to nobody afterwards is harmless.
    build(bus, "after-close");
  });

  it("fastify never tried to answer a hijacked request itself", () => {
    const trouble = lines.filter((l) => Number(l.level) >= 40 || /already sent|hijack/i.test(String(l.msg)));
    assert.deepEqual(trouble, []);
  });
});

describe("event stream lifecycle", () => {
  it("sends heartbeat comments while idle", async () => {
    const bus = new EventBus();
    const app = Fastify();
    await app.register(eventRoutesWith({ heartbeatMs: 25 }), { events: bus });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const s = await openSse(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/events`);
    try {
      await s.until(() => s.comments.filter((c) => c.startsWith("heartbeat")).length >= 2, "two heartbeats");
      assert.equal(s.messages.length, 0, "heartbeats are comments, not events");
    } finally {
      s.close();
      await app.close();
    }
  });

  it("closing the app ends open streams instead of waiting for them", async () => {
    const bus = new EventBus();
    const app = adminApp(bus, pino({ level: "silent" }));
    await app.listen({ host: "127.0.0.1", port: 0 });
    const idle = bus.subscriberCount;
    const s = await openSse(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/events`);
    await waitFor(() => bus.subscriberCount === idle + 1, { what: "the subscription", timeoutMs: 5000 });
    await app.close();
    await s.closed;
    assert.equal(bus.subscriberCount, 0, "the stream and the metrics both unsubscribed");
  });

  it("formatEvent keeps the data on one line", () => {
    const bus = new EventBus();
    bus.emit({ type: "build.failed", filter: "f", error: "line 1\nline 2", buildMs: 3 });
    const text = formatEvent(bus.since(0)[0]!);
    assert.equal(text.split("\n").length, 5, text);
    assert.match(text, /^id: 1\nevent: build.failed\ndata: \{.*\\nline 2.*\}\n\n$/);
  });
});
