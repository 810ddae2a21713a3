/**
 * Throwaway PKI for TLS tests, made at test time with the `openssl` CLI (nothing checked in):
 * a CA, and leaf certificates it signs (server: SAN IP 127.0.0.1 + DNS localhost; client:
 * clientAuth). ECDSA P-256 keys, valid for one day.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestCa extends CertFiles {
  /** A leaf signed by this CA, written to `<dir>/<name>.pem` and `<dir>/<name>.key`. */
  issue(name: string, opts: { usage: "server" | "client"; sans?: string[]; cn?: string }): CertFiles;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr?.toString() || e.message}`);
  }
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A new CA in `dir` (files `<name>.pem`, `<name>.key`). */
export function makeCa(dir: string, name = "ca"): TestCa {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  openssl([
    "req", "-x509", ...EC_KEY, "-keyout", key, "-out", cert, "-days", "1", "-subj", `/CN=wasm-xds test ${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return {
    cert,
    key,
    issue(leaf, opts) {
      const leafCert = path.join(dir, `${leaf}.pem`);
      const leafKey = path.join(dir, `${leaf}.key`);
      const csr = path.join(dir, `${leaf}.csr`);
      const ext = path.join(dir, `${leaf}.ext`);
      const sans = opts.sans ?? (opts.usage === "server" ? ["IP:127.0.0.1", "DNS:localhost"] : [`DNS:${leaf}`]);
      fs.writeFileSync(ext, [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        `extendedKeyUsage=${opts.usage === "server" ? "serverAuth" : "clientAuth"}`,
        `subjectAltName=${sans.join(",")}`,
      ].join("\n") + "\n");
      openssl(["req", ...EC_KEY, "-keyout", leafKey, "-out", csr, "-subj", `/CN=${opts.cn ?? leaf}`], dir);
      openssl([
        "x509", "-req", "-in", csr, "-CA", cert, "-CAkey", key, "-set_serial", `0x${randomBytes(8).toString("hex")}`,
        "-days", "1", "-sha256", "-extfile", ext, "-out", leafCert,
      ], dir);
      return { cert: leafCert, key: leafKey };
    },
  };
}
