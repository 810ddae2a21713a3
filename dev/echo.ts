/**
 * An httpbin-like upstream on loopback: the upstream of `npm run dev` and of the e2e tests
 * (test/support/echo.ts re-exports it).
 *   GET /headers -> 200 {"headers": {<name>: <value>, ...}}
 *   anything else -> 200 {"method", "path", "headers"}
 * Header names are as node:http delivers them (lowercase); repeated headers are joined with ", "
 * (go-httpbin, used in docker-compose.yml, returns lists of values instead).
 */
import http from "node:http";

export interface EchoRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

export interface EchoUpstream {
  /** Port on 127.0.0.1. */
  readonly port: number;
  /** Number of requests answered so far. */
  readonly requests: number;
  /** The most recent request, if any. */
  readonly lastRequest: EchoRequest | undefined;
  /** Stops listening and closes every open connection (Envoy keeps pooled ones open). */
  close(): Promise<void>;
}

function flatten(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

export interface EchoOptions {
  /** Port on 127.0.0.1 (default 0: any free port, read back from `port`). */
  port?: number;
  /** Called for every request answered (e.g. to log it). */
  onRequest?: (request: EchoRequest) => void;
}

export function startEchoUpstream(opts: EchoOptions = {}): Promise<EchoUpstream> {
  let requests = 0;
  let lastRequest: EchoRequest | undefined;

  const server = http.createServer((req, res) => {
    // Drain any request body before answering.
    req.resume();
    req.on("end", () => {
      const path = req.url ?? "/";
      const request: EchoRequest = { method: req.method ?? "GET", path, headers: flatten(req.headers) };
      requests++;
      lastRequest = request;
      opts.onRequest?.(request);
      const pathname = path.split("?")[0];
      const payload = req.method === "GET" && pathname === "/headers" ? { headers: request.headers } : request;
      const body = JSON.stringify(payload);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  // Envoy pools upstream connections for up to an hour; node's default 5 s keep-alive timeout
  // would close them under Envoy's feet and turn a later request into a 503 (reset before
  // headers). 0 disables the timeout: connections stay until Envoy or close() ends them.
  server.keepAliveTimeout = 0;

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: opts.port ?? 0 }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error(`unexpected echo server address: ${String(address)}`));
        return;
      }
      const port = address.port;
      resolve({
        port,
        get requests() {
          return requests;
        },
        get lastRequest() {
          return lastRequest;
        },
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
