/** What one isolation scenario found, as printed in the table and written to the JSON report. */

/** Fail policies the admin API offers (`reload` only once the control plane supports it). */
export type FailPolicy = "closed" | "open" | "reload";

/** How one request through Envoy ended: an HTTP status, or no answer within its time limit. */
export type Outcome = number | "timeout" | "reset";

export interface ScenarioResult {
  /** e.g. "abort-request", "sha256-mismatch". */
  scenario: string;
  /** One line: what the bad filter or module does. */
  what: string;
  /** The fail policy in force, or "n/a" where Envoy never asks (refused before a push, a spin). */
  failPolicy: FailPolicy | "n/a";
  /** Envoy's process alive and admin /ready LIVE after the scenario (before any restart). */
  envoyAlive: boolean;
  /** admin /ready body seen while the scenario was at its worst ("LIVE", or why not). */
  readyDuring: string;
  /** Outcomes of requests that trigger the bad behaviour, in order (empty when none were sent). */
  triggered: Outcome[];
  /** Outcomes of ordinary requests (no trigger) while the bad filter was in the chain. */
  other: Outcome[];
  /** The good filter (add-header) ran on every ordinary request that got an answer. */
  goodFilterUnaffected: boolean;
  /** What the control plane saw: "NACK: ...", "refused (400): ...", "runtime failure only (ACKed)". */
  controlPlane: string;
  /** The recovery step taken and how long until ordinary requests were healthy again. */
  recovery: { action: string; ms: number | null };
  /** Further facts measured on the way (stats, RSS, log lines), for the JSON and the notes. */
  notes: string[];
  /** Set when the harness itself failed in this scenario (the row is then not a measurement). */
  harnessError?: string;
}
