/**
 * A tampering HTTP proxy in front of the control plane's module server: Envoy is pointed at it
 * (CP_MODULE_ADDRESS), it forwards every request unchanged, and for the sha256s it was told to
 * tamper with it flips one byte of the body. The module server itself stays honest; this is the
 * "bytes changed in transit or on a cache" case Envoy's sha256 check exists for.
 */
import http from "node:http";

export interface TamperProxy {
  /** Port on 127.0.0.1. */
  readonly port: number;
  /** Flip a byte in every response for /modules/<sha256>.wasm from now on. */
  tamper(sha256: string): void;
  /** Serve that module honestly again. */
  untamper(sha256: string): void;
  /** Requests seen for /modules/<sha256>.wasm (any query). */
  fetches(sha256: string): number;
  close(): Promise<void>;
}

const MODULE_PATH = /^\/modules\/([0-9a-f]{64})\.wasm(?:\?|$)/;

export function startTamperProxy(upstreamPort: number): Promise<TamperProxy> {
  const tampered = new Set<string>();
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const sha = MODULE_PATH.exec(req.url ?? "")?.[1];
    if (sha !== undefined) counts.set(sha, (counts.get(sha) ?? 0) + 1);
    const upstream = http.request(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      (up) => {
        const chunks: Buffer[] = [];
        up.on("data", (chunk: Buffer) => chunks.push(chunk));
        up.on("error", () => res.destroy());
        up.on("end", () => {
          const body = Buffer.concat(chunks);
          // The last byte of a Wasm module sits in its last section; any flip changes the sha256.
          if (sha !== undefined && tampered.has(sha) && body.length > 0) body[body.length - 1] = body[body.length - 1]! ^ 0xff;
          const headers = { ...up.headers, "content-length": String(body.length) };
          delete headers["transfer-encoding"];
          res.writeHead(up.statusCode ?? 502, headers);
          res.end(body);
        });
      },
    );
    upstream.on("error", (err) => {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`tamper proxy: module server unreachable: ${err.message}`);
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 0;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error(`tamper proxy: unexpected address ${String(address)}`));
        return;
      }
      resolve({
        port: address.port,
        tamper: (sha) => void tampered.add(sha),
        untamper: (sha) => void tampered.delete(sha),
        fetches: (sha) => counts.get(sha) ?? 0,
        close: () => new Promise<void>((done, fail) => {
          server.close((err) => (err ? fail(err) : done()));
          server.closeAllConnections();
        }),
      });
    });
  });
}
