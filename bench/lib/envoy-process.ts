/**
 * Runs the real Envoy (the tests' binary, test/support/paths.ts envoyBinary) from a config file
 * with the harness's flags: --disable-hot-restart, --concurrency N, the admin port picked by
 * Envoy and read back through --admin-address-path. test/support/envoy.ts only starts Envoys
 * from the ADS bootstrap template; the bench also needs static configs, so it spawns both kinds
 * here the same way. A watchdog shell kills Envoy if this process dies without cleaning up.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import type net from "node:net";
import path from "node:path";
import { httpRequest, type HttpResponse } from "../../test/support/http.ts";
import { envoyBinary } from "../../test/support/paths.ts";
import { waitFor } from "../../test/support/wait.ts";

export interface BenchEnvoy {
  name: string;
  pid: number;
  adminUrl: string;
  logPath: string;
  configPath: string;
  admin(pathAndQuery: string): Promise<HttpResponse>;
  stop(): Promise<void>;
}

export interface SpawnEnvoyOptions {
  name: string;
  configPath: string;
  workDir: string;
  concurrency: number;
  /** Wait for /ready LIVE (default true; an ADS Envoy gets there once the control plane answered). */
  waitLive?: boolean;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function spawnEnvoy(opts: SpawnEnvoyOptions): Promise<BenchEnvoy> {
  const logPath = path.join(opts.workDir, `${opts.name}.log`);
  const adminPath = path.join(opts.workDir, `${opts.name}.admin`);
  fs.rmSync(adminPath, { force: true });
  const args = ["-c", opts.configPath, "--disable-hot-restart", "--concurrency", String(opts.concurrency), "-l", "info", "--admin-address-path", adminPath];
  const logFd = fs.openSync(logPath, "a");
  const child = spawn(envoyBinary(), args, { stdio: ["ignore", logFd, logFd] });
  fs.closeSync(logFd);
  live.add(child);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => {
    exited = true;
    live.delete(child);
    resolve();
  }));
  const dog = spawn("/bin/sh", ["-c", 'read _x; kill -KILL "$1" 2>/dev/null', "envoy-watchdog", String(child.pid)], { stdio: ["pipe", "ignore", "ignore"] });
  dog.unref();
  (dog.stdin as net.Socket | null)?.unref();
  void exitedPromise.then(() => dog.kill("SIGKILL"));
  const tail = (): string => fs.readFileSync(logPath, "utf8").split("\n").slice(-20).join("\n");
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exitedPromise;
    clearTimeout(killer);
  };
  try {
    const address = await waitFor(() => {
      if (exited) throw new Error(`envoy ${opts.name} exited:\n${tail()}`);
      const text = fs.existsSync(adminPath) ? fs.readFileSync(adminPath, "utf8").trim() : "";
      return text || undefined;
    }, { what: `envoy ${opts.name} admin address`, timeoutMs: 20_000, intervalMs: 20 });
    const adminUrl = `http://${address}`;
    const admin = (p: string): Promise<HttpResponse> => httpRequest(`${adminUrl}${p}`, { timeoutMs: 5_000 });
    if (opts.waitLive ?? true) {
      await waitFor(async () => {
        if (exited) throw new Error(`envoy ${opts.name} exited:\n${tail()}`);
        return (await admin("/ready")).body.trim() === "LIVE";
      }, { what: `envoy ${opts.name} LIVE`, timeoutMs: 60_000, intervalMs: 50, details: tail });
    }
    return {
      name: opts.name,
      pid: child.pid!,
      adminUrl,
      logPath,
      configPath: opts.configPath,
      admin,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
