/**
 * Readable, prefixed log lines for `npm run dev`: each process's output gets a short name in
 * front, and the control plane's pino JSON lines become `12:00:01.234 INFO  message key=value`
 * (no pino-pretty: it is not a dependency, and one line per record is all that is needed here).
 */
import type { Readable } from "node:stream";

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
/** pino's own fields, shown in the line's head or not at all. */
const HIDDEN = new Set(["level", "time", "pid", "hostname", "msg", "v"]);

const COLORS = { cyan: 36, magenta: 35, green: 32, yellow: 33, red: 31, gray: 90, bold: 1 } as const;
export type Color = keyof typeof COLORS;

export function paint(text: string, color: Color, enabled: boolean): string {
  return enabled ? `\x1b[${COLORS[color]}m${text}\x1b[0m` : text;
}

/** HH:MM:SS.mmm in local time, like Envoy's `%T.%e`. */
export function clock(ms: number = Date.now()): string {
  const d = new Date(ms);
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function showValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}

export interface FormattedLine {
  text: string;
  /** pino's numeric level (30 when the line was not a pino record). */
  level: number;
  /** Further lines (an error's stack) to print indented under it. */
  extra: string[];
}

/**
 * One pino JSON line -> `HH:MM:SS.mmm LEVEL message key=value ...`; an `err` field shows its
 * message inline and, from level error up, its stack below. Anything that is not a pino record
 * (a crash before the logger exists, a warning from Node) is returned unchanged.
 */
export function formatPinoLine(line: string): FormattedLine {
  let record: unknown;
  try {
    record = line.startsWith("{") ? JSON.parse(line) : undefined;
  } catch {
    record = undefined;
  }
  if (!isRecord(record) || typeof record.level !== "number") return { text: line, level: 30, extra: [] };
  const level = record.level;
  const time = typeof record.time === "number" ? clock(record.time) : clock();
  const label = (LEVELS[level] ?? String(level)).padEnd(5);
  const fields: string[] = [];
  const extra: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (HIDDEN.has(key)) continue;
    if (key === "err" && isRecord(value)) {
      fields.push(`err=${showValue(value.message ?? value.type ?? value)}`);
      if (level >= 50 && typeof value.stack === "string") extra.push(...value.stack.split("\n").slice(1));
      continue;
    }
    fields.push(`${key}=${showValue(value)}`);
  }
  const msg = typeof record.msg === "string" ? record.msg : "";
  return { text: [time, label, msg, ...fields].filter((part) => part !== "").join(" "), level, extra };
}

/**
 * formatPinoLine for a stream of records, with fastify's access log folded: the "incoming
 * request" record is held back and its "request completed" one becomes
 * `GET /api/filters -> 404 (1.2 ms)`, shown only for changes (not GET/HEAD) and errors (>= 400):
 * health probes, the dashboard's polling and Envoy's module downloads ("module served" says
 * that already) would otherwise drown the log. Returns null for a line to leave out.
 */
export function pinoFormatter(): (line: string) => FormattedLine | null {
  const pending = new Map<string, string>();
  return (line) => {
    let record: unknown;
    try {
      record = line.startsWith("{") ? JSON.parse(line) : undefined;
    } catch {
      record = undefined;
    }
    if (!isRecord(record)) return formatPinoLine(line);
    const key = `${String(record.component)}/${String(record.reqId)}`;
    if (record.msg === "incoming request" && isRecord(record.req)) {
      if (pending.size > 1000) pending.clear(); // requests that never completed: forget them
      pending.set(key, `${String(record.req.method)} ${String(record.req.url)}`);
      return null;
    }
    if (record.msg === "request completed" && isRecord(record.res)) {
      const request = pending.get(key) ?? "request";
      pending.delete(key);
      const status = typeof record.res.statusCode === "number" ? record.res.statusCode : 0;
      if (/^(GET|HEAD) /.test(request) && status < 400) return null;
      const ms = typeof record.responseTime === "number" ? ` (${record.responseTime.toFixed(1)} ms)` : "";
      const time = typeof record.time === "number" ? clock(record.time) : clock();
      const level = status >= 500 ? 50 : status >= 400 ? 40 : 30;
      const component = typeof record.component === "string" ? `${record.component} ` : "";
      return { text: `${time} ${(LEVELS[level] ?? "INFO").padEnd(5)} ${component}${request} -> ${status}${ms}`, level, extra: [] };
    }
    return formatPinoLine(line);
  };
}

/** Calls `onLine` for every complete line of `stream` (and the last partial one at its end). */
export function eachLine(stream: Readable, onLine: (line: string) => void): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const parts = (pending + chunk).split("\n");
    pending = parts.pop() ?? "";
    for (const part of parts) onLine(part.replace(/\r$/, ""));
  });
  stream.on("end", () => {
    if (pending !== "") onLine(pending);
    pending = "";
  });
}

export interface Logger {
  /** Writes `line` with this logger's prefix (and colour on a terminal). */
  line(text: string, level?: number): void;
}

/** A prefixed writer to stdout: `cp    | ...`. Levels >= warn are coloured on a terminal. */
export function prefixed(name: string, color: Color, colorize: boolean, out: NodeJS.WritableStream = process.stdout): Logger {
  const prefix = paint(`${name.padEnd(5)} |`, color, colorize);
  return {
    line(text, level = 30) {
      const body = level >= 50 ? paint(text, "red", colorize) : level >= 40 ? paint(text, "yellow", colorize) : text;
      out.write(`${prefix} ${body}\n`);
    },
  };
}

/** Envoy's log lines (`--log-format "%T.%e %l [%n] %v"`): the level word decides the colour. */
export function envoyLevel(line: string): number {
  const match = /^\S+ (\w+) /.exec(line);
  const word = match?.[1];
  if (word === "critical" || word === "error") return 50;
  if (word === "warning") return 40;
  return 30;
}
