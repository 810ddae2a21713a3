// The xDS port's authentication decision (controlplane/xds/auth.ts) on stand-in calls: only the
// metadata, the peer and the TLS auth context are read, so this is pure logic. The real gRPC
// server paths (every service, Envoy) are covered by test/e2e/xds-auth.test.ts.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { describe, test } from "node:test";
import { XdsAuth, type AuthCall } from "../../../controlplane/xds/auth.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";

function call(authorization?: string | string[], certificate = false): AuthCall {
  const metadata = new grpc.Metadata();
  for (const v of authorization === undefined ? [] : Array.isArray(authorization) ? authorization : [authorization]) metadata.add("authorization", v);
  return {
    metadata,
    getPeer: () => "127.0.0.1:40000",
    getAuthContext: () => (certificate ? { transportSecurityType: "ssl", sslPeerCertificate: { subject: {} } } : {}),
  };
}

describe("XdsAuth", () => {
  test("no token, no mTLS: every call passes (the config allows that on loopback only)", () => {
    const auth = new XdsAuth({});
    assert.equal(auth.mode, "none");
    assert.equal(auth.check(call(), "/m"), undefined);
    assert.equal(auth.check(call("Bearer anything"), "/m"), undefined);
  });

  test("with a token: exactly `Bearer <token>` passes; the scheme is case-insensitive", () => {
    const auth = new XdsAuth({ token: TOKEN });
    assert.equal(auth.mode, "token");
    assert.equal(auth.check(call(`Bearer ${TOKEN}`), "/m"), undefined);
    assert.equal(auth.check(call(`bearer ${TOKEN}`), "/m"), undefined);
    assert.equal(auth.refused, 0);
  });

  test("with a token: missing, wrong, prefix, longer, unprefixed or repeated values are UNAUTHENTICATED", () => {
    const warnings: object[] = [];
    const auth = new XdsAuth({ token: TOKEN }, { warn: (obj) => void warnings.push(obj) });
    const bad: (string | string[] | undefined)[] = [
      undefined, "", "Bearer", "Bearer ", `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}0`, TOKEN,
      `Basic ${TOKEN}`, `Bearer  ${TOKEN}`, `Bearer ${TOKEN} `, [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`],
    ];
    for (const value of bad) {
      const denied = auth.check(call(value), "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources");
      assert.equal(denied?.code, grpc.status.UNAUTHENTICATED, JSON.stringify(value));
      assert.ok(!denied.details.includes(TOKEN), "the reason never contains the token");
    }
    assert.equal(auth.refused, bad.length);
    // One line per second at most: a client retrying in a loop cannot flood the log.
    assert.equal(warnings.length, 1);
    assert.ok(!JSON.stringify(warnings).includes(TOKEN), "the log never contains the token");
  });

  test("with mTLS: a call without a verified client certificate is refused; with both, both are required", () => {
    const mtls = new XdsAuth({ mtls: true });
    assert.equal(mtls.mode, "mtls");
    assert.equal(mtls.check(call(undefined, true), "/m"), undefined);
    assert.equal(mtls.check(call(), "/m")?.code, grpc.status.UNAUTHENTICATED);
    const both = new XdsAuth({ mtls: true, token: TOKEN });
    assert.equal(both.mode, "mtls+token");
    assert.equal(both.check(call(`Bearer ${TOKEN}`, true), "/m"), undefined);
    assert.equal(both.check(call(undefined, true), "/m")?.code, grpc.status.UNAUTHENTICATED);
    assert.equal(both.check(call(`Bearer ${TOKEN}`, false), "/m")?.code, grpc.status.UNAUTHENTICATED);
  });
});
