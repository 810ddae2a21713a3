// What the control plane queues for one xDS stream, and how much. grpc-js buffers every
// response written to a stream whose peer does not read (HTTP/2 flow control stops the bytes;
// the writes pile up in memory): 100 clients that never read and 80 changes grew the process
// from 378 to 805 MB. So a stream hands grpc-js one response at a time and keeps the rest here:
//   - SotW: a response made while an earlier one is unacknowledged (a queued one is) carries the
//     whole state of its type (sotw-session.ts sends a subset only after an ACK), so a newer one
//     replaces a queued one (the peer never sees the older nonce; it ACKs the newer). A stream
//     queues at most one response per type, whatever the peer does.
//   - Delta: each response carries only what changed, so none may be dropped; what is queued is
//     bounded in bytes and count, and a stream past the bound is reset and counted (an Envoy
//     reconnects and is sent what it lacks from its initial_resource_versions).
// A real Envoy does fall behind for a moment: at start-up its main thread loads every Wasm module
// while it asks for one ECDS name after another (measured: 16 responses queued with 10 filters).
import http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";

export interface WriteLimits {
  /** Responses queued behind the one being written (Delta; SotW queues one per type). */
  maxQueuedResponses: number;
  /** Their encoded resource bytes. */
  maxQueuedBytes: number;
}

export const DEFAULT_WRITE_LIMITS: WriteLimits = { maxQueuedResponses: 1024, maxQueuedBytes: 4 * 1024 * 1024 };

interface Queued<Res> {
  response: Res;
  bytes: number;
}

/**
 * One stream's responses: one handed to grpc-js (written when the previous write completed),
 * the rest queued here. `push` returns false when the queue would pass its limits: the caller
 * then resets the stream.
 */
export class Outbound<Res extends { type_url: string }> {
  private writing = false;
  private readonly queue: Queued<Res>[] = [];
  private queuedBytes = 0;

  constructor(
    private readonly write: (response: Res, done: () => void) => void,
    private readonly supersedes: boolean,
    private readonly limits: WriteLimits = DEFAULT_WRITE_LIMITS,
  ) {}

  push(response: Res): boolean {
    const bytes = responseBytes(response as { resources?: readonly unknown[] });
    if (!this.writing) {
      this.send(response);
      return true;
    }
    if (this.supersedes) {
      const same = this.queue.findIndex((q) => q.response.type_url === response.type_url);
      if (same >= 0) {
        this.queuedBytes += bytes - this.queue[same]!.bytes;
        this.queue[same] = { response, bytes };
        return true;
      }
    } else if (this.queue.length >= this.limits.maxQueuedResponses || this.queuedBytes + bytes > this.limits.maxQueuedBytes) {
      return false;
    }
    this.queue.push({ response, bytes });
    this.queuedBytes += bytes;
    return true;
  }

  get queued(): { responses: number; bytes: number } {
    return { responses: this.queue.length, bytes: this.queuedBytes };
  }

  private send(response: Res): void {
    this.writing = true;
    this.write(response, () => {
      this.writing = false;
      const next = this.queue.shift();
      if (!next) return;
      this.queuedBytes -= next.bytes;
      this.send(next.response);
    });
  }
}

/** Encoded resource bytes of a SotW or Delta response (the bulk of what goes on the wire). */
export function responseBytes(r: { resources?: readonly unknown[] }): number {
  let n = 0;
  for (const item of r.resources ?? []) {
    const any = (item as { resource?: { value?: Uint8Array }; value?: Uint8Array });
    n += (any.resource?.value ?? any.value)?.byteLength ?? 0;
  }
  return n;
}

interface CallChain {
  stream?: http2.Http2Stream;
  nextCall?: CallChain;
}

/**
 * Resets the HTTP/2 stream under a grpc-js server call, freeing what is queued on it. A gRPC
 * status cannot do that: grpc-js sends it after the queued messages, which a peer that does not
 * read never takes. grpc-js has no public way to reach the stream, so this walks its call chain
 * (ServerDuplexStreamImpl.call -> [interceptors' nextCall ->] BaseServerInterceptingCall.stream);
 * test/protocol/backpressure.test.ts fails if a grpc-js upgrade moves it. Returns false when the
 * stream was not found (the caller then ends the call with a status instead).
 */
export function resetStream(call: grpc.ServerDuplexStream<unknown, unknown>): boolean {
  let c = (call as unknown as { call?: CallChain }).call;
  for (let depth = 0; c && !c.stream && depth < 8; depth++) c = c.nextCall;
  const stream = c?.stream;
  if (!stream || typeof stream.close !== "function") return false;
  // ENHANCE_YOUR_CALM: grpc clients report it as RESOURCE_EXHAUSTED.
  if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  return true;
}
