// The end-to-end tests' usual setup: an echo upstream, the control plane as a process, and a
// real Envoy bootstrapped against it, all on loopback; stopped in reverse order.
import path from "node:path";
import { allocatePorts, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "./controlplane.ts";
import { startEchoUpstream, type EchoUpstream } from "./echo.ts";
import { startEnvoy, type EnvoyProcess, type StartEnvoyOptions } from "./envoy.ts";

export interface StackOptions {
  workDir: string;
  filtersDir: string;
  /** Further CP_* variables for the control plane. */
  cpEnv?: Record<string, string>;
  /** Bootstrap fields beyond the xDS port (node id and cluster are what targeting matches on). */
  bootstrap?: Omit<StartEnvoyOptions["bootstrap"], "xdsPort">;
  /** Other startEnvoy options (concurrency, log levels). */
  envoy?: Omit<StartEnvoyOptions, "bootstrap" | "workDir">;
}

export interface Stack {
  readonly ports: ControlPlanePorts;
  readonly echo: EchoUpstream;
  readonly cp: ControlPlaneProcess;
  readonly envoy: EnvoyProcess;
  /** The last lines of Envoy's and the control plane's logs, for failure messages. */
  details(): string;
  stop(): Promise<void>;
}

/** Starts upstream, control plane and Envoy, and waits until Envoy is ready. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const ports = await allocatePorts();
  const echo = await startEchoUpstream();
  let cp: ControlPlaneProcess | undefined;
  let envoy: EnvoyProcess | undefined;
  const stop = async (): Promise<void> => {
    await envoy?.stop();
    await cp?.kill("SIGTERM");
    await echo.close();
  };
  try {
    cp = await startControlPlane({
      ports, filtersDir: opts.filtersDir, stateFile: path.join(opts.workDir, "state.json"), upstreamPort: echo.port, workDir: opts.workDir,
      ...(opts.cpEnv ? { env: opts.cpEnv } : {}),
    });
    envoy = await startEnvoy({ ...opts.envoy, bootstrap: { ...opts.bootstrap, xdsPort: ports.xds }, workDir: opts.workDir });
    await envoy.waitReady(30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const started = { cp, envoy };
  return {
    ports, echo, cp: started.cp, envoy: started.envoy, stop,
    details: () => `--- envoy\n${started.envoy.tail(25)}\n--- control plane\n${started.cp.tail(30)}`,
  };
}
