/**
 * The e2e tests' bootstrap renderer: dev/bootstrap.ts (shared with `npm run dev`), with the xDS
 * token defaulting to this test process's TEST_XDS_TOKEN, so every Envoy a test starts is
 * authenticated against every control plane startControlPlane() runs, the way users run.
 */
import { randomBytes } from "node:crypto";
import {
  renderBootstrap as renderWithToken,
  writeBootstrap as writeWithToken,
  type BootstrapOpts as BootstrapOptsWithToken,
} from "../../dev/bootstrap.ts";

export type { AdsApiType, XdsTlsOpts } from "../../dev/bootstrap.ts";

/**
 * The xDS token (CP_XDS_TOKEN) of this test process, fresh per run: every control plane that
 * startControlPlane() runs requires it and every bootstrap rendered here sends it, so e2e tests
 * run authenticated, the way users run.
 */
export const TEST_XDS_TOKEN: string = randomBytes(24).toString("hex");

export interface BootstrapOpts extends Omit<BootstrapOptsWithToken, "xdsToken"> {
  /**
   * The xDS token Envoy sends (`authorization: Bearer <token>` in initial_metadata). Default:
   * TEST_XDS_TOKEN, the one startControlPlane() gives every control plane; null: the template's
   * placeholder stays (an Envoy without the token).
   */
  xdsToken?: string | null;
}

function withToken(opts: BootstrapOpts): BootstrapOptsWithToken {
  return { ...opts, xdsToken: opts.xdsToken === undefined ? TEST_XDS_TOKEN : opts.xdsToken };
}

/** The rendered bootstrap as YAML text (with the template's comments and a header). */
export function renderBootstrap(opts: BootstrapOpts): string {
  return renderWithToken(withToken(opts));
}

/** Writes the rendered bootstrap to `<dir>/<fileName>` (default envoy.yaml) and returns its path. */
export function writeBootstrap(dir: string, opts: BootstrapOpts, fileName = "envoy.yaml"): string {
  return writeWithToken(dir, withToken(opts), fileName);
}
