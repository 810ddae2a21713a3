import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseRoutesFile, re2Problem, RoutesFileError } from "../../../controlplane/routes/routes-file.ts";

const GOOD = `# comment
upstreams:
  api:
    endpoints: [127.0.0.1:8081, "[::1]:8082"]
    connect_timeout: 250ms
  web:
    endpoints: web.internal:8080
virtual_hosts:
  - name: main
    domains: ["*"]
    routes:
      - name: api
        prefix: /api
        upstream: api
        timeout: 1.5s
        retries: { retry_on: "5xx, connect-failure", num_retries: 3 }
      - name: versioned
        regex: "^/v[0-9]+/.*"
        headers:
          - { name: x-env, exact: canary }
          - { name: x-debug, present: true }
          - { name: x-id, regex: "[a-f0-9]+" }
        upstream: web
      - { name: health, path: /healthz, upstream: web, timeout: 0s }
  - name: b
    domains: [b.example, "*.b.example", "b.*"]
    routes: [{ name: b-all, prefix: /, upstream: web }]
`;

/** The error a file gets: its message (file:line: reason) and line. */
function refused(text: string): RoutesFileError {
  try {
    parseRoutesFile("routes.yaml", text);
  } catch (err) {
    assert.ok(err instanceof RoutesFileError, `a RoutesFileError, got ${String(err)}`);
    return err;
  }
  assert.fail(`accepted:\n${text}`);
}

/** GOOD with one line replaced. */
const withLine = (n: number, line: string): string => GOOD.split("\n").map((l, i) => (i === n - 1 ? line : l)).join("\n");

describe("routes file: a good file", () => {
  test("parses to the table the file says", () => {
    const t = parseRoutesFile("routes.yaml", GOOD);
    assert.deepEqual(t.upstreams, [
      { name: "api", endpoints: [{ host: "127.0.0.1", port: 8081 }, { host: "::1", port: 8082 }], connectTimeoutMs: 250 },
      { name: "web", endpoints: [{ host: "web.internal", port: 8080 }], connectTimeoutMs: 2000 },
    ]);
    const [main, b] = t.virtualHosts;
    assert.deepEqual(main!.routes[0], {
      name: "api", match: { prefix: "/api" }, upstream: "api", timeoutMs: 1500, retries: { retryOn: "5xx,connect-failure", numRetries: 3 },
    });
    assert.deepEqual(main!.routes[1]!.match, {
      regex: "^/v[0-9]+/.*",
      headers: [{ name: "x-env", exact: "canary" }, { name: "x-debug", present: true }, { name: "x-id", regex: "[a-f0-9]+" }],
    });
    assert.deepEqual(main!.routes[2], { name: "health", match: { path: "/healthz" }, upstream: "web", timeoutMs: 0 });
    assert.deepEqual(b!.domains, ["b.example", "*.b.example", "b.*"]);
  });

  test("anchors and aliases are followed", () => {
    const t = parseRoutesFile("r.yaml", [
      "upstreams:", "  a: { endpoints: &ep [127.0.0.1:1] }", "  b: { endpoints: *ep }",
      'virtual_hosts:', '  - { name: m, domains: ["*"], routes: [{ name: r, prefix: /, upstream: b }] }', "",
    ].join("\n"));
    assert.deepEqual(t.upstreams[1]!.endpoints, [{ host: "127.0.0.1", port: 1 }]);
  });
});

describe("routes file: refused with the file and line", () => {
  const cases: { what: string; text: string; line: number | undefined; reason: RegExp }[] = [
    { what: "YAML syntax", text: withLine(4, "    endpoints: [127.0.0.1:8081"), line: 5, reason: /YAML: / },
    { what: "duplicate upstream (YAML duplicate key)", text: withLine(6, "  api:"), line: 6, reason: /YAML: Map keys must be unique/ },
    {
      what: "unknown upstream", line: 24,
      text: withLine(24, "      - { name: health, path: /healthz, upstream: nope }"),
      reason: /route "health": upstream "nope" is not defined \(defined: api, web\)/,
    },
    {
      what: "duplicate route name", line: 27,
      text: withLine(27, "    routes: [{ name: api, prefix: /, upstream: web }]"),
      reason: /duplicate route name "api" \(first at line 12\)/,
    },
    { what: "duplicate virtual host name", text: withLine(25, "  - name: main"), line: 25, reason: /duplicate virtual host name "main"/ },
    {
      what: "a domain in two virtual hosts", line: 26,
      text: withLine(26, '    domains: [b.example, "*"]'),
      reason: /domain "\*" is already served by virtual host "main"/,
    },
    { what: "empty domains", text: withLine(26, "    domains: []"), line: 26, reason: /virtual host "b": domains is empty/ },
    {
      what: "bad domain", line: 26,
      text: withLine(26, "    domains: [a.*.example]"),
      reason: /domain "a\.\*\.example" is not a host name/,
    },
    { what: "bad port", text: withLine(4, "    endpoints: [127.0.0.1:70000]"), line: 4, reason: /port 70000 is not 1-65535/ },
    { what: "not host:port", text: withLine(4, "    endpoints: [127.0.0.1]"), line: 4, reason: /endpoint "127\.0\.0\.1" is not host:port/ },
    {
      what: "IPs and names mixed", line: 4,
      text: withLine(4, "    endpoints: [127.0.0.1:1, web:2]"),
      reason: /mixes IP addresses and host names/,
    },
    {
      what: "reserved upstream name", line: 6,
      text: withLine(6, "  wasm_modules:").replace("upstream: web", "upstream: wasm_modules"),
      reason: /wasm_modules.*defines itself/,
    },
    { what: "xds_cluster reserved too", text: withLine(6, "  xds_cluster:"), line: 6, reason: /xds_cluster.*defines itself/ },
    {
      what: "invalid regex", line: 18,
      text: withLine(18, '        regex: "^/v[0-9+/.*"'),
      reason: /regex "\^\/v\[0-9\+\/\.\*": not a valid regular expression/,
    },
    {
      what: "lookahead (RE2 has none)", line: 18,
      text: withLine(18, '        regex: "^/(?!admin).*"'),
      reason: /lookahead and lookbehind are not supported by RE2/,
    },
    {
      what: "backreference in a header regex", line: 22,
      text: withLine(22, '          - { name: x-id, regex: "(a)\\\\1" }'),
      reason: /backreferences are not supported by RE2/,
    },
    {
      what: "two match kinds", line: 12,
      text: withLine(14, "        upstream: api\n        path: /x"),
      reason: /expected exactly one of prefix, path, regex \(got prefix, path\)/,
    },
    { what: "no match", text: withLine(13, ""), line: 12, reason: /expected exactly one of prefix, path, regex \(got none\)/ },
    { what: "path without a slash", text: withLine(13, "        prefix: api"), line: 13, reason: /prefix "api" must start with "\/"/ },
    { what: "unknown field (a typo)", text: withLine(14, "        upstrem: api"), line: 14, reason: /unknown field "upstrem"/ },
    { what: "bad duration", text: withLine(15, "        timeout: soon"), line: 15, reason: /timeout "soon": expected a duration/ },
    { what: "zero connect timeout", text: withLine(5, "    connect_timeout: 0s"), line: 5, reason: /connect_timeout "0s"/ },
    {
      what: "unknown retry_on", line: 16,
      text: withLine(16, '        retries: { retry_on: "5xx,sometimes" }'),
      reason: /retry_on "sometimes" unknown/,
    },
    {
      what: "too many retries", line: 16,
      text: withLine(16, "        retries: { retry_on: 5xx, num_retries: 99 }"),
      reason: /num_retries: expected an integer 0-10/,
    },
    {
      what: "a number where a name belongs", line: 12,
      text: withLine(12, "      - name: 42"),
      reason: /route name: expected a non-empty string/,
    },
    { what: "bad name", text: withLine(12, "      - name: has space"), line: 12, reason: /route "has space": invalid name/ },
    {
      what: "upper-case header name", line: 20,
      text: withLine(20, "          - { name: X-Env, exact: canary }"),
      reason: /header name "X-Env" is not a lower-case HTTP field name/,
    },
    { what: "no virtual hosts", text: "upstreams: {}\nvirtual_hosts: []\n", line: 2, reason: /virtual_hosts is empty/ },
    { what: "missing virtual_hosts", text: "upstreams: {}\n", line: 1, reason: /the file: missing "virtual_hosts"/ },
  ];
  for (const c of cases) {
    test(c.what, () => {
      const err = refused(c.text);
      assert.equal(err.line, c.line, err.message);
      assert.match(err.message, c.reason);
      assert.ok(err.message.startsWith(`routes.yaml${c.line !== undefined ? `:${c.line}` : ""}: `), err.message);
      assert.ok(!err.message.includes("\n"), `one line: ${err.message}`);
    });
  }

  test("an empty file", () => {
    assert.match(refused("").message, /^routes\.yaml: the file is empty/);
    assert.match(refused("# nothing\n").message, /the file is empty/);
  });
});

describe("RE2 compatibility", () => {
  test("accepts what RE2 takes", () => {
    for (const ok of ["^/api/.*", "[(?=]x", "a\\(?=b\\)", "(?i)^/Admin", "\\d{3}-[a-z]+", "(?:a|b)*", "[\\1]"]) {
      assert.equal(re2Problem(ok), undefined, ok);
    }
  });
  test("refuses lookaround and backreferences", () => {
    for (const bad of ["(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(a)\\1", "(?<n>a)\\k<n>"]) assert.match(re2Problem(bad) ?? "", /RE2/, bad);
    assert.match(re2Problem("(") ?? "", /not a valid regular expression/);
  });
});
