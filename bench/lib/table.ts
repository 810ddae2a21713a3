/** One table, two renderings: Markdown (report.md) and aligned text (the terminal). */
export interface Table {
  headers: string[];
  rows: string[][];
  /** Columns aligned left (the rest right). */
  leftColumns?: number[];
}

export function markdownTable(t: Table): string {
  const left = new Set(t.leftColumns ?? [0]);
  const sep = t.headers.map((_, i) => (left.has(i) ? ":--" : "--:"));
  return [t.headers, sep, ...t.rows].map((r) => `| ${r.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`).join("\n");
}

export function textTable(t: Table): string {
  const left = new Set(t.leftColumns ?? [0]);
  const widths = t.headers.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string => r.map((c, i) => (left.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(t.headers), widths.map((w) => "-".repeat(w)).join("  "), ...t.rows.map(line)].join("\n");
}
