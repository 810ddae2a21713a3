/**
 * The child processes of `npm run dev` (control plane, Envoy): output streamed line by line to a
 * callback, a stop that escalates SIGTERM to SIGKILL, and no orphans. On Ctrl-C the terminal
 * signals the whole foreground process group, children included, so they may already be on
 * their way out when stop() runs; stop() then only waits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { eachLine } from "./logs.ts";

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly running: boolean;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<ChildExit>;
  /** SIGTERM, SIGKILL after `graceMs` (default 5 s); resolves once exited. Idempotent. */
  stop(graceMs?: number): Promise<ChildExit>;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Every line the process writes to stdout or stderr. */
  onLine: (line: string) => void;
}

/**
 * A shell, in its own process group (so Ctrl-C does not reach it), blocked reading a pipe whose
 * write end only this process holds. When this process dies however it dies (SIGKILL included),
 * `read` hits EOF and the shell SIGKILLs the child. Killed as soon as the child exits.
 */
function startWatchdog(pid: number): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", 'read _unused; kill -KILL "$1" 2>/dev/null', "dev-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
    detached: true,
  });
  dog.on("error", () => {
    // Best effort: stop() and the exit hook below still cover every exit this process survives.
  });
  dog.unref();
  (dog.stdin as net.Socket | null)?.unref();
  return dog;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function spawnChild(opts: SpawnOptions): Promise<Child> {
  const child = spawn(opts.command, opts.args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (err) => reject(new Error(`cannot start ${opts.name} (${opts.command}): ${err.message}`)));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${opts.name}: spawn returned no pid`);
  live.add(child);
  const dog = startWatchdog(pid);
  eachLine(child.stdout!, opts.onLine);
  eachLine(child.stderr!, opts.onLine);

  let running = true;
  const exited = new Promise<ChildExit>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false;
      live.delete(child);
      dog.kill("SIGKILL");
      resolve({ code, signal });
    });
  });
  let stopping: Promise<ChildExit> | undefined;
  return {
    name: opts.name,
    pid,
    get running() {
      return running;
    },
    exited,
    stop(graceMs = 5_000) {
      if (!running) return exited;
      stopping ??= (async () => {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(killer);
        }
      })();
      return stopping;
    },
  };
}

/** "exited with code 1" / "was killed by SIGKILL", for messages. */
export function describeExit(exit: ChildExit): string {
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${String(exit.code)}`;
}
