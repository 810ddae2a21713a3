// TLS material of the control plane (CP_TLS_CERT, CP_TLS_KEY, CP_TLS_CLIENT_CA), read and checked
// once at start-up so that a wrong file is one ConfigError line naming the variable, not a
// handshake failure later.
//   - xDS port:      server certificate; with CP_TLS_CLIENT_CA also client certificates (mTLS).
//   - module server: server certificate (HTTPS); Envoy verifies it against
//                    CP_MODULE_TLS_CA_FOR_ENVOY, pushed in the module cluster (xds/resources.ts).
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { ConfigError, type TlsConfig } from "./config.ts";

export interface TlsMaterial {
  /** PEM certificate chain, leaf first. */
  cert: Buffer;
  /** PEM private key of the leaf. */
  key: Buffer;
  /** PEM CA bundle for client certificates on the xDS port (mTLS); absent: none asked for. */
  clientCa?: Buffer;
}

/** An OpenSSL/Node message on one line (a ConfigError is one line). */
function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, " ").trim();
}

function readPem(variable: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? reason(err);
    throw new ConfigError(`${variable}=${JSON.stringify(file)}: cannot read (${code})`);
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM bundle, in order; a ConfigError when there is none or one is bad. */
function certificates(variable: string, file: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString("utf8").match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${variable}=${JSON.stringify(file)}: no PEM certificate in it`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(`${variable}=${JSON.stringify(file)}: certificate ${i + 1} is invalid (${reason(err)})`);
    }
  });
}

/** True when some certificate of `ca` signed some certificate of `chain` (leaf or intermediate). */
function issuedBy(chain: readonly X509Certificate[], ca: readonly X509Certificate[]): boolean {
  return chain.some((c) => ca.some((a) => c.checkIssued(a) && c.verify(a.publicKey)));
}

/**
 * Reads and checks the files named by `config`: the certificate parses, the key parses and
 * belongs to it, the CAs parse, the certificate covers `moduleHost` (the host Envoy fetches
 * modules from, CP_MODULE_ADDRESS: Envoy checks the SAN against it), and (when Envoy is told to
 * trust CP_TLS_CLIENT_CA for the module server, the default) that CA did sign the certificate.
 * Each of these would otherwise surface only as Envoy failing to fetch modules. Throws ConfigError.
 */
export function loadTls(config: TlsConfig | undefined, moduleHost?: string): TlsMaterial | undefined {
  if (!config) return undefined;
  const cert = readPem("CP_TLS_CERT", config.certFile);
  const key = readPem("CP_TLS_KEY", config.keyFile);
  const chain = certificates("CP_TLS_CERT", config.certFile, cert);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(`CP_TLS_KEY=${JSON.stringify(config.keyFile)}: not a usable PEM private key (${reason(err)})`);
  }
  if (!chain[0]!.checkPrivateKey(privateKey)) {
    throw new ConfigError(`CP_TLS_KEY=${JSON.stringify(config.keyFile)}: does not belong to the first certificate of CP_TLS_CERT=${JSON.stringify(config.certFile)}`);
  }
  if (moduleHost !== undefined) {
    const leaf = chain[0]!;
    const covered = net.isIP(moduleHost) ? leaf.checkIP(moduleHost) !== undefined : leaf.checkHost(moduleHost) !== undefined;
    if (!covered) {
      throw new ConfigError(`CP_TLS_CERT=${JSON.stringify(config.certFile)} does not cover the module host ${JSON.stringify(moduleHost)} of CP_MODULE_ADDRESS (its names: ${leaf.subjectAltName ?? "none"}), which Envoy checks`);
    }
  }
  const material: TlsMaterial = { cert, key };
  if (config.clientCaFile !== undefined) {
    const clientCa = readPem("CP_TLS_CLIENT_CA", config.clientCaFile);
    const authorities = certificates("CP_TLS_CLIENT_CA", config.clientCaFile, clientCa);
    material.clientCa = clientCa;
    // The default of CP_MODULE_TLS_CA_FOR_ENVOY assumes one private CA for both sides; if it
    // did not sign our certificate, Envoy would reject the module server and run no filter.
    if (config.moduleCaForEnvoy === config.clientCaFile && !issuedBy(chain, authorities)) {
      throw new ConfigError(`CP_MODULE_TLS_CA_FOR_ENVOY (default CP_TLS_CLIENT_CA=${JSON.stringify(config.clientCaFile)}) did not sign CP_TLS_CERT: set CP_MODULE_TLS_CA_FOR_ENVOY to the CA that did, as Envoy sees its path`);
    }
  }
  try {
    // Whatever else OpenSSL objects to (key type, chain format) surfaces here, not on a handshake.
    tls.createSecureContext({ cert, key, ...(material.clientCa ? { ca: material.clientCa } : {}) });
  } catch (err) {
    throw new ConfigError(`CP_TLS_CERT/CP_TLS_KEY: OpenSSL rejects them (${reason(err)})`);
  }
  return material;
}
