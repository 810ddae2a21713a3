// Bounds what the control plane queues for one xDS stream. grpc-js buffers every response
// written to a stream whose peer does not read (HTTP/2 flow control stops the bytes; the
// writes pile up in memory): 100 clients that never read and 80 changes grew the process from
// 378 to 805 MB. An Envoy reads its responses as they come, so a backlog means a peer that
// cannot keep up or will not: its stream is reset and counted, and an Envoy simply reconnects
// and is sent the current state once (SotW and Delta both start from what it holds).
import http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";

export interface WriteLimits {
  /** Responses written but not yet flushed to the connection. */
  maxQueuedResponses: number;
  /** Their encoded resource bytes. One response is always admitted on an empty queue. */
  maxQueuedBytes: number;
}

export const DEFAULT_WRITE_LIMITS: WriteLimits = { maxQueuedResponses: 16, maxQueuedBytes: 1024 * 1024 };

/** What one stream has in flight; `admit` says whether one more response may be queued. */
export class WriteBudget {
  private responses = 0;
  private bytes = 0;

  constructor(private readonly limits: WriteLimits = DEFAULT_WRITE_LIMITS) {}

  admit(bytes: number): boolean {
    if (this.responses > 0) {
      if (this.responses >= this.limits.maxQueuedResponses) return false;
      if (this.bytes + bytes > this.limits.maxQueuedBytes) return false;
    }
    this.responses++;
    this.bytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.responses--;
    this.bytes -= bytes;
  }

  get queued(): { responses: number; bytes: number } {
    return { responses: this.responses, bytes: this.bytes };
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
