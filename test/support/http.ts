/** Minimal HTTP/1.1 client on node:http, for talking to Envoy listeners and admin endpoints. */
import http from "node:http";

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /**
   * Agent for connection reuse (e.g. `new http.Agent({ keepAlive: true })`). Default `false`:
   * a fresh connection per request, closed afterwards, so no test leaks sockets.
   */
  agent?: http.Agent | false;
  /** Abort the request after this long (default 10 s). */
  timeoutMs?: number;
}

/** One HTTP request; resolves with status, headers and the whole body as UTF-8 text. */
export function httpRequest(url: string | URL, opts: HttpRequestOptions = {}): Promise<HttpResponse> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? "GET", headers: opts.headers, agent: opts.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${opts.method ?? "GET"} ${String(url)}: no response within ${timeoutMs}ms`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** GET `url` with optional request headers. `agent`: see HttpRequestOptions.agent. */
export function httpGet(
  url: string | URL,
  headers?: Record<string, string>,
  agent?: http.Agent | false,
): Promise<HttpResponse> {
  return httpRequest(url, { headers, agent });
}
