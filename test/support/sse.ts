/** A Server-Sent Events reader on node:http, for tests of GET /api/events. */
import { EventEmitter } from "node:events";
import http from "node:http";

export interface SseMessage {
  /** The `id:` field, if the message had one. */
  id?: string;
  /** The `event:` field ("message" when absent, as in EventSource). */
  event: string;
  data: string;
  /** When the message arrived here (performance.now()). */
  receivedAt: number;
}

export interface SseStream {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** Every message so far, in arrival order. */
  readonly messages: SseMessage[];
  /** Comment lines (`: ...`) so far, without the colon. */
  readonly comments: string[];
  /** The raw text received so far. */
  readonly raw: () => string;
  /** True once the server ended the response or the connection closed. */
  readonly ended: () => boolean;
  /**
   * Resolves with the first value `probe` returns other than undefined/false, re-checked on every
   * chunk received; rejects on timeout or when the stream ends first.
   */
  until<T>(probe: () => T | undefined | false, what: string, timeoutMs?: number): Promise<T>;
  /** Resolves when the response ends or the connection closes. */
  readonly closed: Promise<void>;
  /** Closes the connection from the client side. */
  close(): void;
}

/** Opens `url` (GET) and resolves once the response headers arrive. */
export function openSse(url: string | URL, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: "text/event-stream", ...headers }, agent: false }, (res) => {
      const changed = new EventEmitter();
      changed.setMaxListeners(0);
      const messages: SseMessage[] = [];
      const comments: string[] = [];
      let raw = "";
      let pending = "";
      let ended = false;
      const closed = new Promise<void>((done) => {
        const end = (): void => {
          if (ended) return;
          ended = true;
          changed.emit("change");
          done();
        };
        res.on("end", end);
        res.on("close", end);
        res.on("error", end);
      });
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        raw += chunk;
        pending += chunk.replace(/\r\n?/g, "\n");
        let cut: number;
        while ((cut = pending.indexOf("\n\n")) >= 0) {
          const block = pending.slice(0, cut);
          pending = pending.slice(cut + 2);
          const msg: SseMessage = { event: "message", data: "", receivedAt: performance.now() };
          const data: string[] = [];
          let any = false;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) {
              comments.push(line.slice(1).trim());
              continue;
            }
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") (data.push(value), (any = true));
            else if (field === "event") (msg.event = value, (any = true));
            else if (field === "id") (msg.id = value, (any = true));
          }
          // `retry:`-only and comment-only blocks dispatch no message.
          if (any && data.length > 0) {
            msg.data = data.join("\n");
            messages.push(msg);
          }
        }
        changed.emit("change");
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        comments,
        raw: () => raw,
        ended: () => ended,
        closed,
        until<T>(probe: () => T | undefined | false, what: string, ms = 10_000): Promise<T> {
          return new Promise<T>((ok, fail) => {
            const check = (): boolean => {
              let value: T | undefined | false;
              try {
                value = probe();
              } catch (err) {
                finish();
                fail(err);
                return true;
              }
              if (value !== undefined && value !== false) {
                finish();
                ok(value);
                return true;
              }
              if (ended) {
                finish();
                fail(new Error(`event stream ended while waiting for ${what}; received:\n${raw}`));
                return true;
              }
              return false;
            };
            const timer = setTimeout(() => {
              finish();
              fail(new Error(`timed out after ${ms}ms waiting for ${what}; received:\n${raw.slice(-4000)}`));
            }, ms);
            const onChange = (): void => void check();
            const finish = (): void => {
              clearTimeout(timer);
              changed.off("change", onChange);
            };
            if (!check()) changed.on("change", onChange);
          });
        },
        close() {
          req.destroy();
          res.destroy();
        },
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${String(url)}: no response headers within ${timeoutMs}ms`)));
    req.on("response", () => req.setTimeout(0));
    req.on("error", reject);
  });
}

/** The JSON of a message's data. */
export function json<T = Record<string, unknown>>(m: SseMessage): T {
  return JSON.parse(m.data) as T;
}
