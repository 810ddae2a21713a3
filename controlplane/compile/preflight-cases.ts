// One filter.test.json case run through the in-process proxy-wasm host (cli/wasm-host.ts): shared
// by `npm run filters -- test` (cli/check.ts) and the pre-flight before a push (preflight-worker.ts),
// so a case means the same thing in both.

import { runStream, type HeaderList } from "../cli/wasm-host.ts";

/** Header name -> expected value, or null for "absent". */
export type Expected = Record<string, string | null>;

export interface TestCase {
  name: string;
  /** Plugin configuration; default: filter.json's. */
  configuration?: string;
  request?: Record<string, string>;
  response?: Record<string, string>;
  expect?: { request?: Expected; response?: Expected; localReply?: number | null };
}

export interface CaseOutcome {
  ok: boolean;
  problems: string[];
  warnings: string[];
}

/** The differences between the headers a stream ended with and what the case expects. */
export function compareHeaders(side: string, actual: HeaderList, expected: Expected | undefined): string[] {
  const problems: string[] = [];
  for (const [key, want] of Object.entries(expected ?? {})) {
    const values = actual.filter(([k]) => k === key.toLowerCase()).map(([, v]) => v);
    const got = values.length > 0 ? values.join(", ") : null;
    if (got !== want) {
      const show = (v: string | null) => (v === null ? "absent" : JSON.stringify(v));
      problems.push(`${side} header ${key}: expected ${show(want)}, got ${show(got)}`);
    }
  }
  return problems;
}

/**
 * Runs one case in a fresh VM: root context started and configured with the case's configuration
 * (else `defaultConfiguration`, filter.json's), then one request/response. Never throws: a trap is
 * a problem of the case.
 */
export async function runTestCase(wasm: Uint8Array, rootId: string, defaultConfiguration: string, tc: TestCase): Promise<CaseOutcome> {
  const problems: string[] = [];
  const warnings: string[] = [];
  try {
    const out = await runStream(wasm, {
      rootId,
      configuration: tc.configuration ?? defaultConfiguration,
      request: Object.entries(tc.request ?? { ":method": "GET", ":path": "/" }),
      response: Object.entries(tc.response ?? { ":status": "200" }),
    });
    problems.push(
      ...compareHeaders("request", out.request, tc.expect?.request),
      ...compareHeaders("response", out.response, tc.expect?.response),
    );
    const wantReply = tc.expect?.localReply;
    if (wantReply !== undefined && (out.localReply?.status ?? null) !== wantReply) {
      problems.push(`local reply: expected ${wantReply ?? "none"}, got ${out.localReply ? out.localReply.status : "none"}`);
    }
    if (out.unsupported.length > 0) {
      warnings.push(`host calls answered "unimplemented" here (Envoy has them): ${[...new Set(out.unsupported)].join(", ")}`);
    }
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
  }
  return { ok: problems.length === 0, problems, warnings };
}
