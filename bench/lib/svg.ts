/** Two small SVG chart kinds, written as text (no dependencies). */

const FONT = 'font-family="system-ui, sans-serif" font-size="12"';
const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"];

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max * 1.0001 + step / 2; v += step) ticks.push(Number(v.toPrecision(6)));
  return ticks;
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) for (const m of [1, 2, 5]) {
    const v = m * 10 ** e;
    if (v >= min * 0.999 && v <= max * 1.001) out.push(v);
  }
  return out;
}

const label = (v: number): string => (v >= 100 ? Math.round(v).toLocaleString("en-US") : String(Number(v.toPrecision(3))));

export interface BarSeries {
  name: string;
  values: number[];
  /** Optional whiskers (e.g. min..max across rounds). */
  low?: number[];
  high?: number[];
}

/** Horizontal grouped bars: one group per category, one bar per series. */
export function barChart(opts: { title: string; unit: string; categories: string[]; series: BarSeries[] }): string {
  const { categories, series } = opts;
  const barH = 12;
  const groupH = series.length * barH + 10;
  const left = Math.max(120, 16 + 6.8 * Math.max(...categories.map((c) => c.length)));
  const width = left + 640;
  const plotW = width - left - 70;
  const top = 50;
  const height = top + categories.length * groupH + 36;
  const max = Math.max(...series.flatMap((s) => [...s.values, ...(s.high ?? [])]).filter(Number.isFinite), 0);
  const ticks = niceTicks(max);
  const scale = (v: number): number => (plotW * v) / (ticks[ticks.length - 1] || 1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(opts.title)}</text>`,
  ];
  series.forEach((s, i) => {
    const x = left + i * 110;
    out.push(`<rect x="${x}" y="30" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 14}" y="39">${esc(s.name)}</text>`);
  });
  for (const t of ticks) {
    const x = left + scale(t);
    out.push(`<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${height - 30}" stroke="#ddd"/>`);
    out.push(`<text x="${x}" y="${height - 14}" text-anchor="middle" fill="#555">${label(t)}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${height - 2}" text-anchor="middle" fill="#555">${esc(opts.unit)}</text>`);
  categories.forEach((c, g) => {
    const y0 = top + g * groupH;
    out.push(`<text x="${left - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end">${esc(c)}</text>`);
    series.forEach((s, i) => {
      const v = s.values[g]!;
      const y = y0 + i * barH;
      if (Number.isFinite(v)) {
        out.push(`<rect x="${left}" y="${y}" width="${Math.max(0.5, scale(v))}" height="${barH - 2}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${c} ${s.name}: ${label(v)} ${opts.unit}`)}</title></rect>`);
        out.push(`<text x="${left + scale(v) + 4}" y="${y + barH - 3}" font-size="10" fill="#333">${label(v)}</text>`);
      }
      const lo = s.low?.[g];
      const hi = s.high?.[g];
      if (lo !== undefined && hi !== undefined && Number.isFinite(lo) && Number.isFinite(hi)) {
        const ym = y + (barH - 2) / 2;
        out.push(`<line x1="${left + scale(lo)}" y1="${ym}" x2="${left + scale(hi)}" y2="${ym}" stroke="#222" stroke-width="1"/>`);
      }
    });
  });
  out.push("</svg>");
  return out.join("\n");
}

export interface TimePoint {
  /** ms from the series origin */
  t: number;
  p50: number;
  p99: number;
  max: number;
  count: number;
  errors: number;
}

/**
 * Latency per interval (p50, p99, max; log scale) over a run, requests per interval below it,
 * reload actions as vertical lines (shaded: the reload window), first new responses as dots
 * (filled: on the load's connections; hollow: on the probe's fresh connections).
 */
export function timeSeriesChart(opts: {
  title: string;
  points: TimePoint[];
  bucketMs: number;
  actions: { t: number; label: string }[];
  windows: [number, number][];
  firstNew: number[];
  firstNewFresh: number[];
}): string {
  const width = 1100;
  const left = 60;
  const right = 20;
  const top = 56;
  const plotH = 300;
  const rateTop = top + plotH + 30;
  const rateH = 70;
  const height = rateTop + rateH + 40;
  const plotW = width - left - right;
  const endT = Math.max(opts.bucketMs, (opts.points.at(-1)?.t ?? 0) + opts.bucketMs);
  const x = (t: number): number => left + (plotW * t) / endT;
  const lat = opts.points.flatMap((p) => [p.p50, p.p99, p.max]).filter((v) => Number.isFinite(v) && v > 0);
  const yMin = Math.max(0.05, Math.min(...lat, 1));
  const yMax = Math.max(...lat, yMin * 10);
  const lo = Math.log10(yMin);
  const hi = Math.log10(yMax);
  const y = (v: number): number => top + plotH - (plotH * (Math.log10(Math.max(v, yMin)) - lo)) / (hi - lo || 1);
  const maxCount = Math.max(1, ...opts.points.map((p) => p.count));
  const yc = (c: number): number => rateTop + rateH - (rateH * c) / maxCount;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(opts.title)}</text>`,
  ];
  for (const [a, b] of opts.windows) {
    out.push(`<rect x="${x(a)}" y="${top}" width="${Math.max(1, x(Math.min(b, endT)) - x(a))}" height="${plotH}" fill="#fde9c8" opacity="0.6"/>`);
  }
  for (const t of logTicks(yMin, yMax)) {
    out.push(`<line x1="${left}" y1="${y(t)}" x2="${width - right}" y2="${y(t)}" stroke="#eee"/><text x="${left - 6}" y="${y(t) + 4}" text-anchor="end" fill="#555">${label(t)}</text>`);
  }
  out.push(`<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle" fill="#555">latency ms (log)</text>`);
  for (const t of niceTicks(endT / 1000, 10)) {
    out.push(`<line x1="${x(t * 1000)}" y1="${top}" x2="${x(t * 1000)}" y2="${rateTop + rateH}" stroke="#f3f3f3"/><text x="${x(t * 1000)}" y="${height - 20}" text-anchor="middle" fill="#555">${label(t)}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${height - 4}" text-anchor="middle" fill="#555">seconds since load start (${opts.bucketMs} ms intervals)</text>`);
  const line = (key: "p50" | "p99" | "max", color: string): void => {
    const pts = opts.points.filter((p) => Number.isFinite(p[key])).map((p) => `${x(p.t + opts.bucketMs / 2).toFixed(1)},${y(p[key]).toFixed(1)}`);
    if (pts.length) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.3" points="${pts.join(" ")}"/>`);
  };
  line("max", "#bab0ac");
  line("p99", "#e15759");
  line("p50", "#4e79a7");
  opts.actions.forEach((a) => {
    out.push(`<line x1="${x(a.t)}" y1="${top}" x2="${x(a.t)}" y2="${rateTop + rateH}" stroke="#333" stroke-dasharray="3,3"><title>${esc(a.label)}</title></line>`);
  });
  for (const t of opts.firstNew) out.push(`<circle cx="${x(t)}" cy="${top + 6}" r="3.5" fill="#59a14f"><title>first new response on the load at ${(t / 1000).toFixed(2)} s</title></circle>`);
  for (const t of opts.firstNewFresh) out.push(`<circle cx="${x(t)}" cy="${top + 15}" r="3.5" fill="none" stroke="#59a14f"><title>first new response on a fresh connection at ${(t / 1000).toFixed(2)} s</title></circle>`);
  // requests per interval, errors in red
  out.push(`<text x="${left}" y="${rateTop - 6}" fill="#555">requests per interval (errors red)</text>`);
  for (const p of opts.points) {
    const w = Math.max(0.5, x(p.t + opts.bucketMs) - x(p.t) - 0.5);
    out.push(`<rect x="${x(p.t)}" y="${yc(p.count)}" width="${w}" height="${rateTop + rateH - yc(p.count)}" fill="#c7d4e6"/>`);
    if (p.errors > 0) out.push(`<rect x="${x(p.t)}" y="${yc(p.errors)}" width="${w}" height="${rateTop + rateH - yc(p.errors)}" fill="#e15759"/>`);
  }
  const legend: [string, string][] = [["p50", "#4e79a7"], ["p99", "#e15759"], ["max", "#bab0ac"], ["reload action", "#333"], ["first new response (load)", "#59a14f"], ["first new (fresh connection)", "none"], ["reload window", "#fde9c8"]];
  let lx = left;
  for (const [name, color] of legend) {
    out.push(`<rect x="${lx}" y="28" width="10" height="10" fill="${color}" stroke="${color === "none" ? "#59a14f" : color}"/><text x="${lx + 14}" y="37">${esc(name)}</text>`);
    lx += 24 + 6.5 * name.length;
  }
  out.push("</svg>");
  return out.join("\n");
}
