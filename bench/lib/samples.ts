/**
 * Per-request records of one load run, kept column-wise (a 60 s run at 1,000 req/s is 60k rows).
 * Times are absolute milliseconds on one clock shared by every part of the bench (`nowMs`), so
 * requests line up with reload actions and the control plane's `builtAt`.
 */

/** Wall-clock milliseconds with sub-millisecond resolution (monotonic within this process). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Status recorded for a request that got no HTTP response (socket error, timeout). */
export const NO_RESPONSE = 0;

export class SampleLog {
  /** When the request was sent (ms, `nowMs` clock). */
  readonly start: number[] = [];
  /** Send to last byte of the response, ms. */
  readonly latency: number[] = [];
  /** HTTP status, or NO_RESPONSE. */
  readonly status: number[] = [];
  /** Index into `markers`: the response headers the bench watches (see `markerOf`). */
  readonly marker: number[] = [];
  readonly markers: string[] = [];
  /** Socket-level failures by kind (ECONNRESET, timeout, ...). */
  readonly errorKinds: Record<string, number> = {};
  private readonly markerIds = new Map<string, number>();

  get count(): number {
    return this.start.length;
  }

  add(start: number, latency: number, status: number, marker: string): void {
    let id = this.markerIds.get(marker);
    if (id === undefined) {
      id = this.markers.length;
      this.markers.push(marker);
      this.markerIds.set(marker, id);
    }
    this.start.push(start);
    this.latency.push(latency);
    this.status.push(status);
    this.marker.push(id);
  }

  addError(start: number, latency: number, kind: string): void {
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
    this.add(start, latency, NO_RESPONSE, "");
  }

  markerAt(i: number): string {
    return this.markers[this.marker[i]!]!;
  }

  /** Requests answered with a status outside 2xx. */
  non2xx(): number {
    return this.status.filter((s) => s !== NO_RESPONSE && (s < 200 || s > 299)).length;
  }

  socketErrors(): number {
    return this.status.filter((s) => s === NO_RESPONSE).length;
  }
}

/** The response headers the bench watches, as one string: `name=value;...` (absent ones left out). */
export const MARKER_HEADERS = ["x-wasm-filter", "x-wasm-extra"] as const;

export function markerOf(get: (name: string) => string | undefined): string {
  const parts: string[] = [];
  for (const name of MARKER_HEADERS) {
    const v = get(name);
    if (v !== undefined) parts.push(`${name}=${v}`);
  }
  return parts.join(";");
}

/** The value of `name` inside a marker string, if present. */
export function markerValue(marker: string, name: string): string | undefined {
  for (const part of marker.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq) === name) return part.slice(eq + 1);
  }
  return undefined;
}
