// What the fan-out benchmark's servers serve: three synthetic Wasm filters (fake sha256s, nobody
// fetches modules) behind one listener, with the docker-compose defaults for the rest. Shared by
// bench/support/fanout-server.ts (our server) and bench/support/peer-resources.ts (the export the
// go-control-plane peer serves), so both describe the same generations.
import { createHash } from "node:crypto";
import type { FilterResourceSpec, ResourceInputs } from "../../controlplane/xds/resources.ts";

export const FILTER_NAMES: readonly string[] = ["add-header", "auth-check", "rate-tag"];

/** The filter whose module changes from one generation to the next. */
export const CHANGING_FILTER = FILTER_NAMES[0]!;

const shaOf = (name: string, gen: number): string => createHash("sha256").update(`${name}#${gen}`).digest("hex");

/** Generation 0 is the initial state; each later one changes CHANGING_FILTER's module only. */
export function filterSpecs(generation: number): FilterResourceSpec[] {
  return FILTER_NAMES.map((name) => ({
    name,
    sha256: shaOf(name, name === CHANGING_FILTER ? generation : 0),
    rootId: name,
    enabled: true,
    configuration: `{"filter":"${name}"}`,
  }));
}

export function resourceInputs(generation: number): ResourceInputs {
  return {
    // The defaults of docker-compose (host names: DNS clusters, so no EDS is involved).
    listener: { address: "0.0.0.0", port: 10000 },
    upstream: { host: "echo", port: 8080 },
    moduleServer: { host: "host.docker.internal", port: 18080 },
    filters: filterSpecs(generation),
  };
}
