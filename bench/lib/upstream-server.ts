/**
 * The bench's upstream, run as its own process so it never shares an event loop with the load
 * generator: `GET /headers` answers `{"headers": {...}}` (httpbin's shape, like
 * test/support/echo.ts), anything else `{}`. Keep-alive with no timeout (Envoy pools upstream
 * connections; node's default 5 s would close them under its feet). Prints `{"port": N}` once
 * listening on 127.0.0.1 and exits when its parent closes stdin.
 */
import http from "node:http";

const server = http.createServer((req, res) => {
  let body = "{}";
  if (req.url === "/headers" || req.url?.startsWith("/headers?")) {
    const headers: Record<string, string> = {};
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      headers[name] = headers[name] === undefined ? raw[i + 1]! : `${headers[name]}, ${raw[i + 1]!}`;
    }
    body = JSON.stringify({ headers });
  }
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 0;
server.listen({ host: "127.0.0.1", port: Number(process.env.BENCH_UPSTREAM_PORT ?? 0) }, () => {
  const address = server.address();
  if (address && typeof address === "object") process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
