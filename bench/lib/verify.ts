/**
 * Before measuring, each target must show it does what its row claims: the filter(s) added the
 * response header `x-wasm-filter: add-header` (N times for a chain of N) and, when proxied, the
 * upstream received `x-wasm-processed: yes` (N times); targets without a filter show neither.
 */
import { httpGet, type HttpResponse } from "../../test/support/http.ts";
import { waitFor } from "../../test/support/wait.ts";
import { DIRECT_RESPONSE_BODY } from "./envoy-configs.ts";
import { CHAIN_LENGTH } from "./filters.ts";
import type { Target } from "./stacks.ts";

function count(value: string | string[] | undefined, expected: string): number {
  if (value === undefined) return 0;
  const all = (Array.isArray(value) ? value : value.split(",")).map((v) => v.trim());
  return all.filter((v) => v === expected).length;
}

function problem(t: Target, r: HttpResponse): string | undefined {
  const n = t.filter === "none" ? 0 : t.filter === "wasm5" ? CHAIN_LENGTH : 1;
  if (r.status !== 200) return `status ${r.status}`;
  const added = count(r.headers["x-wasm-filter"], "add-header");
  if (added !== n) return `response header x-wasm-filter: add-header ${added} times, expected ${n}`;
  if (t.group === "direct_response") {
    return r.body === DIRECT_RESPONSE_BODY ? undefined : `body ${JSON.stringify(r.body.slice(0, 100))} is not the direct_response body`;
  }
  const seen = (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-wasm-processed"];
  const got = count(seen, "yes");
  return got === n ? undefined : `upstream saw x-wasm-processed: yes ${got} times, expected ${n}`;
}

export async function verifyTarget(t: Target): Promise<void> {
  let last = "";
  // ECDS Envoys are LIVE once their listener exists; give the filter config a moment to land.
  await waitFor(async () => {
    const r = await httpGet(t.url);
    last = problem(t, r) ?? "";
    return last === "";
  }, { what: `${t.id} (${t.url}) to behave as its row claims`, timeoutMs: 30_000, intervalMs: 100, details: () => last });
}
