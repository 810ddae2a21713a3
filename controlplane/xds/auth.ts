// Who may talk to the xDS port (every discovery service, the Fetch* calls and the
// MetricsService): one decision per gRPC call, taken before the call's first message is read.
//   - CP_XDS_TOKEN: the call's initial metadata must carry `authorization: Bearer <token>`.
//     Envoy sends it from the bootstrap (grpc_service.initial_metadata on the ADS service and
//     on the metrics_service stat sink); Envoy cannot expand variables there, see
//     envoy-bootstrap/envoy.yaml for how the value gets in.
//   - CP_TLS_CLIENT_CA (mTLS): the TLS handshake already demands a certificate that CA signed,
//     so a call that reaches a handler has one; it is checked again per call here so that a
//     change of the server credentials can never silently open the port.
// With both, both are required. With neither, every call passes: config.ts allows that only
// on loopback. Token comparison is constant-time (fixed-length digests, timingSafeEqual), and
// neither the expected nor the offered value is ever logged.
import { createHash, timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";

export interface XdsAuthOptions {
  /** CP_XDS_TOKEN: the bearer token every call must carry; absent: no token check. */
  token?: string;
  /** CP_TLS_CLIENT_CA is set: every call must come over a TLS connection with a verified client certificate. */
  mtls?: boolean;
}

/** What this module reads of a server call (all grpc-js server calls have it). */
export interface AuthCall {
  metadata: grpc.Metadata;
  getPeer(): string;
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: unknown };
}

export interface AuthLog {
  warn(obj: object, msg: string): void;
}

/** A refused call's status: what a handler ends the call with. */
export interface Unauthenticated {
  code: grpc.status.UNAUTHENTICATED;
  details: string;
}

/** At most one log line per this long about refused calls (the rest are counted in the next line). */
const LOG_EVERY_MS = 1000;
/** The auth scheme is case-insensitive (RFC 9110); the token is one header-safe word. */
const BEARER = /^bearer ([\x21-\x7e]+)$/i;

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * Decides whether a call is authenticated. `check(call)` returns undefined for an
 * authenticated call, else the UNAUTHENTICATED status to end it with (logged at warn).
 */
export class XdsAuth {
  private readonly tokenDigest: Buffer | undefined;
  private readonly mtls: boolean;
  /** Calls refused since start. */
  refused = 0;
  /** Refusals not logged since the last line: a client retrying in a loop must not flood the log. */
  private unlogged = 0;
  private lastLogAt = 0;

  constructor(opts: XdsAuthOptions, private readonly log?: AuthLog) {
    this.tokenDigest = opts.token === undefined ? undefined : digest(opts.token);
    this.mtls = opts.mtls ?? false;
  }

  /** "none", "token", "mtls" or "mtls+token", for the start-up log line. */
  get mode(): string {
    return [this.mtls ? "mtls" : "", this.tokenDigest ? "token" : ""].filter(Boolean).join("+") || "none";
  }

  check(call: AuthCall, method: string): Unauthenticated | undefined {
    const reason = this.reason(call);
    if (reason === undefined) return undefined;
    this.refused++;
    const now = Date.now();
    if (now - this.lastLogAt < LOG_EVERY_MS) this.unlogged++;
    else {
      this.log?.warn({ peer: call.getPeer(), method, reason, refusedSinceLastLine: this.unlogged, refusedTotal: this.refused },
        "xDS call refused: not authenticated");
      this.lastLogAt = now;
      this.unlogged = 0;
    }
    return { code: grpc.status.UNAUTHENTICATED, details: reason };
  }

  private reason(call: AuthCall): string | undefined {
    if (this.mtls && call.getAuthContext().sslPeerCertificate === undefined) {
      return "a client certificate signed by the control plane's CA (CP_TLS_CLIENT_CA) is required";
    }
    if (this.tokenDigest === undefined) return undefined;
    const values = call.metadata.get("authorization");
    if (values.length !== 1 || typeof values[0] !== "string") {
      return "expected one `authorization: Bearer <CP_XDS_TOKEN>` metadata entry (grpc_service.initial_metadata in Envoy's bootstrap)";
    }
    const offered = BEARER.exec(values[0])?.[1];
    // Digests have one length whatever was offered: the comparison time says nothing about the token.
    if (offered === undefined || !timingSafeEqual(digest(offered), this.tokenDigest)) {
      return "the bearer token does not match CP_XDS_TOKEN";
    }
    return undefined;
  }
}
