// `npm run filters -- fail-policy <name> open|closed|reload` against a stand-in admin API.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { run } from "../../controlplane/cli/main.ts";

async function cli(argv: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("filters CLI: fail-policy", () => {
  const seen: { method: string; url: string; type?: string; body: string }[] = [];
  let server: http.Server;
  let url: string;

  before(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen.push({ method: req.method ?? "", url: req.url ?? "", type: req.headers["content-type"], body });
        const m = /^\/api\/filters\/([^/]+)\/fail-policy$/.exec(req.url ?? "");
        const json = (code: number, b: unknown) => res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(b));
        if (req.method !== "PUT" || !m) return json(404, { error: "no route" });
        if (m[1] !== "add-header") return json(404, { error: `no filter named "${m[1]}"` });
        const { failPolicy } = JSON.parse(body) as { failPolicy: string };
        return json(200, { name: "add-header", enabled: true, order: 10, sha256: null, status: "ok", failPolicy });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("PUTs the policy as JSON and prints the result", async () => {
    for (const policy of ["reload", "open", "closed"]) {
      seen.length = 0;
      const r = await cli(["fail-policy", "add-header", policy], { CP_ADMIN_URL: url });
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `add-header: fail policy ${policy}`);
      assert.deepEqual(seen, [{ method: "PUT", url: "/api/filters/add-header/fail-policy", type: "application/json", body: JSON.stringify({ failPolicy: policy }) }]);
    }
  });

  it("usage errors (exit 2) for a bad policy or arity; API refusals exit 1 with the reason", async () => {
    seen.length = 0;
    const bad = await cli(["fail-policy", "add-header", "sometimes"], { CP_ADMIN_URL: url });
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown fail policy "sometimes": expected one of open, closed, reload/);
    assert.equal((await cli(["fail-policy", "add-header"], { CP_ADMIN_URL: url })).code, 2);
    assert.equal(seen.length, 0, "nothing sent");
    const missing = await cli(["fail-policy", "nope", "open"], { CP_ADMIN_URL: url });
    assert.equal(missing.code, 1);
    assert.equal(missing.err, 'filters: PUT /api/filters/nope/fail-policy: 404 no filter named "nope"');
  });
});
