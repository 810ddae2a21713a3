/**
 * Every NACK the control plane records, from its event stream (GET /api/events), so a scenario
 * can ask "did Envoy reject anything since I started?" without racing /api/clients' lastNack
 * (which keeps only the newest per type).
 */
import { openSse, type SseStream } from "../../../test/support/sse.ts";

export interface Nack {
  typeUrl: string;
  version: string;
  message: string;
  /** performance.now() when it arrived here. */
  receivedAt: number;
}

export interface NackWatch {
  since(t: number): Nack[];
  /** Cache-miss re-sends since t (the control plane's planned NACK-then-resend, not a rejection). */
  resendsSince(t: number): number;
  close(): void;
}

// Envoy's message when `nack_on_code_cache_miss` rejects a config whose module it must fetch
// first: that NACK is the control plane's own delivery mechanism, not a verdict on the module.
const CACHE_MISS = /cache miss/i;

export function isCacheMissNack(n: Nack): boolean {
  return CACHE_MISS.test(n.message);
}

export async function watchNacks(adminUrl: string): Promise<NackWatch> {
  const stream: SseStream = await openSse(`${adminUrl}/api/events?types=xds.nacked,xds.cache_miss_resend`);
  if (stream.status !== 200) throw new Error(`GET /api/events answered ${stream.status}`);
  const parsed = (): { event: string; data: Record<string, unknown>; receivedAt: number }[] =>
    stream.messages.map((m) => ({ event: m.event, data: JSON.parse(m.data) as Record<string, unknown>, receivedAt: m.receivedAt }));
  return {
    since: (t) => parsed().filter((m) => m.event === "xds.nacked" && m.receivedAt >= t).map((m) => ({
      typeUrl: String(m.data.typeUrl), version: String(m.data.version), message: String(m.data.message), receivedAt: m.receivedAt,
    })),
    resendsSince: (t) => parsed().filter((m) => m.event === "xds.cache_miss_resend" && m.receivedAt >= t).length,
    close: () => stream.close(),
  };
}
