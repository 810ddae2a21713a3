/**
 * A filter reaching for a host function it was not granted: capability-probe makes an HTTP call
 * out on every request. Uploaded once without declaring `http_call` (the control plane then
 * leaves it out of Envoy's capability_restriction_config) and once declaring it; the probe
 * reports the WasmResult Envoy returned in `x-probe-http-call`.
 */
import type { ScenarioContext } from "./context.ts";
import type { ScenarioResult } from "./types.ts";

const MARKER = "x-probe-http-call";

export async function runCapability(ctx: ScenarioContext): Promise<ScenarioResult[]> {
  const rows: ScenarioResult[] = [];
  for (const declared of [false, true]) {
    const name = ctx.freshName(declared ? "capability-granted" : "capability-denied");
    const since = performance.now();
    await ctx.deploy("capability-probe", name, "closed", MARKER, declared ? ["http_call"] : []);
    const other = await ctx.traffic.burst(3);
    const results = [...new Set(other.map((a) => a.headers[MARKER] ?? "(none)"))];
    const alive = await ctx.envoyAlive();
    rows.push({
      scenario: declared ? "http call out, declared" : "http call out, not declared",
      what: `capability-probe calls proxy_http_call on every request; upload ${declared ? "declares" : "does not declare"} http_call`,
      failPolicy: "closed", envoyAlive: alive.alive, readyDuring: alive.ready, triggered: [], other: other.map((a) => a.outcome),
      goodFilterUnaffected: other.every((a) => a.outcome === 200 && a.goodRan),
      controlPlane: `${ctx.controlPlaneView(since, "no NACK")}; the host call returned WasmResult ${results.join("/")} (${results.includes("0") ? "Ok" : results.includes("10") ? "InternalFailure: denied" : "?"})`,
      recovery: { action: declared ? "none needed (the call is allowed)" : "none needed (the call is refused, the filter goes on)", ms: 0 },
      notes: [`x-probe-http-call on the responses: ${results.join(", ")}`],
    });
    await ctx.api.switchFilter(name, false);
  }
  return rows;
}
