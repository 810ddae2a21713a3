/**
 * Requests through Envoy's listener, one fresh connection each, classified: the status (or
 * timeout / reset), and whether the good filter (add-header) ran: it adds `x-wasm-processed`
 * to the request (the echo upstream reflects it) and `x-wasm-filter: add-header` to the response.
 */
import { httpRequest } from "../../../test/support/http.ts";
import type { Outcome } from "./types.ts";

export interface Answer {
  outcome: Outcome;
  /** add-header's response header was on the answer. */
  goodRan: boolean;
  headers: Record<string, string>;
  /** Request headers the upstream saw (200 from the echo upstream only). */
  upstreamSaw: Record<string, string>;
}

export class Traffic {
  constructor(private readonly listenerPort: number) {}

  async send(headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<Answer> {
    try {
      const r = await httpRequest(`http://127.0.0.1:${this.listenerPort}/headers`, { headers, timeoutMs });
      const flat: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(", ") : v;
      let upstreamSaw: Record<string, string> = {};
      if (r.status === 200) {
        try {
          upstreamSaw = (JSON.parse(r.body) as { headers?: Record<string, string> }).headers ?? {};
        } catch {
          upstreamSaw = {};
        }
      }
      return { outcome: r.status, goodRan: (flat["x-wasm-filter"] ?? "").includes("add-header"), headers: flat, upstreamSaw };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { outcome: /no response within/.test(message) ? "timeout" : "reset", goodRan: false, headers: {}, upstreamSaw: {} };
    }
  }

  /** `n` requests one after another. */
  async burst(n: number, headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<Answer[]> {
    const out: Answer[] = [];
    for (let i = 0; i < n; i++) out.push(await this.send(headers, timeoutMs));
    return out;
  }
}

/** A healthy ordinary answer: 200 from the upstream with add-header's marks on both sides. */
export function healthy(a: Answer): boolean {
  // Copies of add-header (uploaded beside it) each add one more "yes".
  return a.outcome === 200 && a.goodRan && (a.upstreamSaw["x-wasm-processed"] ?? "").split(",").some((v) => v.trim() === "yes");
}

/** "503 x3, 200 x2" in first-seen order. */
export function summarize(outcomes: readonly Outcome[]): string {
  if (outcomes.length === 0) return "-";
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(String(o), (counts.get(String(o)) ?? 0) + 1);
  return [...counts].map(([k, n]) => (n === 1 ? k : `${k} x${n}`)).join(", ");
}
