// Start-up checks of the TLS files (controlplane/tls.ts): a wrong file is one ConfigError line
// naming its variable. Certificates are made at test time with the openssl CLI.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ConfigError, type TlsConfig } from "../../controlplane/config.ts";
import { loadTls } from "../../controlplane/tls.ts";
import { makeCa, type CertFiles, type TestCa } from "../support/certs.ts";

describe("loadTls", () => {
  let dir: string;
  let ca: TestCa;
  let server: CertFiles;
  let other: CertFiles;
  let otherCa: TestCa;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-tls-"));
    ca = makeCa(dir);
    server = ca.issue("server", { usage: "server" });
    otherCa = makeCa(dir, "other-ca");
    other = otherCa.issue("other", { usage: "server" });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const config = (over: Partial<TlsConfig> = {}): TlsConfig => ({ certFile: server.cert, keyFile: server.key, moduleCaForEnvoy: "/envoy/ca.pem", ...over });

  function fails(c: TlsConfig, pattern: RegExp, moduleHost?: string): void {
    assert.throws(() => loadTls(c, moduleHost), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes("\n"), `one line: ${err.message}`);
      return true;
    });
  }

  test("no TLS config, no material", () => {
    assert.equal(loadTls(undefined), undefined);
  });

  test("good files: certificate and key, plus the client CA for mTLS", () => {
    const plain = loadTls(config());
    assert.ok(plain);
    assert.deepEqual(plain.cert, fs.readFileSync(server.cert));
    assert.deepEqual(plain.key, fs.readFileSync(server.key));
    assert.equal(plain.clientCa, undefined);
    const mtls = loadTls(config({ clientCaFile: ca.cert, moduleCaForEnvoy: ca.cert }));
    assert.deepEqual(mtls?.clientCa, fs.readFileSync(ca.cert));
  });

  test("missing or unreadable files name their variable", () => {
    fails(config({ certFile: path.join(dir, "nope.pem") }), /^CP_TLS_CERT=".*nope\.pem": cannot read \(ENOENT\)$/);
    fails(config({ keyFile: path.join(dir, "nope.key") }), /^CP_TLS_KEY=".*nope\.key": cannot read \(ENOENT\)$/);
    fails(config({ clientCaFile: dir }), /^CP_TLS_CLIENT_CA=".*": cannot read \(EISDIR\)$/);
  });

  test("files that are not what they should be", () => {
    const junk = path.join(dir, "junk.pem");
    fs.writeFileSync(junk, "not a certificate\n");
    fails(config({ certFile: junk }), /^CP_TLS_CERT=.*no PEM certificate/);
    fails(config({ certFile: server.key }), /^CP_TLS_CERT=.*no PEM certificate/);
    fails(config({ keyFile: junk }), /^CP_TLS_KEY=.*not a usable PEM private key/);
    fails(config({ keyFile: other.key }), /^CP_TLS_KEY=.*does not belong to the first certificate of CP_TLS_CERT/);
    fails(config({ clientCaFile: junk }), /^CP_TLS_CLIENT_CA=.*no PEM certificate/);
    const broken = path.join(dir, "broken.pem");
    fs.writeFileSync(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    fails(config({ certFile: broken }), /^CP_TLS_CERT=.*certificate 1 is invalid/);
  });

  test("the certificate must cover the module host Envoy checks (CP_MODULE_ADDRESS)", () => {
    for (const host of ["127.0.0.1", "localhost"]) assert.ok(loadTls(config(), host), host);
    fails(config(), /^CP_TLS_CERT=.* does not cover the module host "10\.0\.0\.1" of CP_MODULE_ADDRESS \(its names: .*IP Address:127\.0\.0\.1/, "10.0.0.1");
    fails(config(), /does not cover the module host "host\.docker\.internal"/, "host.docker.internal");
  });

  test("the default CA for Envoy (the client CA) must have signed the server certificate", () => {
    fails(config({ clientCaFile: otherCa.cert, moduleCaForEnvoy: otherCa.cert }), /^CP_MODULE_TLS_CA_FOR_ENVOY .*did not sign CP_TLS_CERT/);
    // An explicit path is Envoy's: not checked here (it may exist only on Envoy's machine).
    assert.ok(loadTls(config({ clientCaFile: otherCa.cert, moduleCaForEnvoy: "/etc/envoy/ca.pem" })));
  });
});
