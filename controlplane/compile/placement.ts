// Where and at what priority builds run (CP_BUILD_CPUS): Linux CPU affinity, and SCHED_IDLE.
//
// Why builds move to a process of their own when placed: Linux applies affinity, nice and the
// scheduling policy per thread, and about half of an asc compile's CPU time is spent by V8's
// helper threads (garbage collection, JIT tiers), which the whole control plane process shares.
// Pinning or lowering only the compile worker thread left that half on Envoy's cores (why
// CP_BUILD_NICE alone did not help). A child process started under `taskset -c` (and `chrt -i 0`)
// carries the setting into every thread it ever starts, and so does cargo with its rustc children.
//
// The main thread validates the setting (resolveBuildCpus, at start-up) and hands it down through
// the environment (setBuildPlacement): compile worker threads get a copy of process.env when they
// start, child processes inherit it.

import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";

/** The validated CPU list, as the compile worker and cargo read it (internal: set by main.ts). */
export const BUILD_CPUS_ENV = "WASM_XDS_BUILD_CPUS";
/** "idle": builds run under SCHED_IDLE (only when no other task wants the CPU). Internal, for the benchmark. */
export const BUILD_SCHED_ENV = "WASM_XDS_BUILD_SCHED";

export interface BuildPlacement {
  /** taskset list ("1", "0-1,3"), canonical form; undefined: any CPU. */
  cpus?: string;
  /** SCHED_IDLE: the build only gets CPU time no other task wants. */
  idle: boolean;
}

const MAX_CPU = 4095;

/**
 * Parses taskset's list syntax: comma-separated CPU numbers and ranges, a range optionally with
 * a stride ("0-6:2" = 0,2,4,6). Returns the CPUs sorted, without duplicates; throws on anything else.
 */
export function parseCpuList(text: string): number[] {
  const trimmed = text.trim();
  if (trimmed === "") throw new Error("expected a CPU list such as 1 or 0-1,3 (empty)");
  const cpus = new Set<number>();
  for (const raw of trimmed.split(",")) {
    const item = raw.trim();
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(item);
    if (!m) throw new Error(`expected a CPU list such as 1 or 0-1,3; ${JSON.stringify(item)} is not a CPU number or range`);
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    const stride = m[3] === undefined ? 1 : Number(m[3]);
    if (first > MAX_CPU || last > MAX_CPU) throw new Error(`CPU numbers go up to ${MAX_CPU}; got ${JSON.stringify(item)}`);
    if (last < first) throw new Error(`range ${JSON.stringify(item)} ends before it starts`);
    if (stride < 1) throw new Error(`range ${JSON.stringify(item)}: the stride must be at least 1`);
    for (let c = first; c <= last; c += stride) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** The shortest taskset list for `cpus` (sorted, distinct): [0,1,2,5] -> "0-2,5". */
export function formatCpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j]! + 1) j++;
    parts.push(j === i ? String(cpus[i]) : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** CPUs this process may run on (Cpus_allowed_list of /proc/self/status); undefined off Linux. */
export function allowedCpus(): number[] | undefined {
  return cpusAllowedIn(readStatus());
}

/** Cpus_allowed_list of a /proc/<pid>/status text. */
export function cpusAllowedIn(status: string | undefined): number[] | undefined {
  const line = status === undefined ? null : /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(status);
  return line ? parseCpuList(line[1]!) : undefined;
}

function readStatus(): string | undefined {
  try {
    return fs.readFileSync("/proc/self/status", "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Checks a CP_BUILD_CPUS value at start-up: valid list syntax, Linux, every CPU one this process
 * may use (taskset would fail on each build otherwise), taskset installed. Returns the canonical
 * list; throws an Error saying what is wrong.
 */
export function resolveBuildCpus(
  text: string,
  host: { allowed: number[] | undefined; hasTaskset: () => boolean } = { allowed: allowedCpus(), hasTaskset: tasksetInstalled },
): string {
  const { allowed, hasTaskset } = host;
  const cpus = parseCpuList(text);
  if (allowed === undefined) throw new Error("CPU affinity needs Linux (/proc/self/status has no Cpus_allowed_list)");
  const missing = cpus.filter((c) => !allowed.includes(c));
  if (missing.length > 0) {
    throw new Error(`CPU ${formatCpuList(missing)} is not available to this process (it may use ${formatCpuList(allowed)})`);
  }
  if (!hasTaskset()) throw new Error("taskset is not installed (util-linux): it starts builds on those CPUs");
  return formatCpuList(cpus);
}

function tasksetInstalled(): boolean {
  return spawnSync("taskset", ["--version"], { stdio: "ignore" }).status === 0;
}

/** Makes later builds (new compile workers, cargo runs) use `placement`. Main thread, at start-up. */
export function setBuildPlacement(placement: Partial<BuildPlacement>): void {
  if (placement.cpus === undefined) delete process.env[BUILD_CPUS_ENV];
  else process.env[BUILD_CPUS_ENV] = placement.cpus;
  if (placement.idle === undefined) return;
  if (placement.idle) process.env[BUILD_SCHED_ENV] = "idle";
  else delete process.env[BUILD_SCHED_ENV];
}

/** The placement in force for builds started now (read from the environment, see setBuildPlacement). */
export function buildPlacement(env: NodeJS.ProcessEnv = process.env): BuildPlacement {
  const cpus = env[BUILD_CPUS_ENV]?.trim();
  return { ...(cpus ? { cpus } : {}), idle: env[BUILD_SCHED_ENV] === "idle" };
}

/** A placement that changes nothing: builds may run in-thread as they always did. */
export function isDefaultPlacement(p: BuildPlacement): boolean {
  return p.cpus === undefined && !p.idle;
}

/**
 * The command line that runs `command args` under `placement`: `taskset -c <cpus>` then
 * `chrt -i 0`, both of which exec the command (same pid, so killing it by pid still works).
 */
export function placedCommand(command: string, args: readonly string[], placement: BuildPlacement): { command: string; args: string[] } {
  const prefix: string[] = [];
  if (placement.cpus !== undefined) prefix.push("taskset", "-c", placement.cpus);
  if (placement.idle) prefix.push("chrt", "-i", "0");
  if (prefix.length === 0) return { command, args: [...args] };
  return { command: prefix[0]!, args: [...prefix.slice(1), command, ...args] };
}

/**
 * A placed command whose program could not be started: taskset and chrt exit 127 with
 * "<tool>: failed to execute <command>: ..." where spawn() itself would have failed with ENOENT.
 */
export function wrapperCouldNotExec(code: number | null, stderr: string): boolean {
  return code === 127 && /^(taskset|chrt): failed to execute /m.test(stderr);
}

/** This thread's id (Linux: /proc/thread-self links to <pid>/task/<tid>). */
export function threadId(): number | undefined {
  try {
    return Number(fs.readlinkSync("/proc/thread-self").split("/").pop());
  } catch {
    return undefined;
  }
}

/**
 * Pins the calling thread to the build CPUs (for short jobs kept in a worker thread, e.g. the
 * pre-flight): taskset -p on this thread's id. Returns an error message instead of throwing.
 */
export function pinThisThread(placement: BuildPlacement = buildPlacement()): string | undefined {
  if (placement.cpus === undefined || os.platform() !== "linux") return undefined;
  const tid = threadId();
  if (tid === undefined) return "cannot tell this thread's id (no /proc/thread-self)";
  try {
    execFileSync("taskset", ["-p", "-c", placement.cpus, String(tid)], { stdio: "ignore" });
    return undefined;
  } catch (err) {
    return `taskset -p -c ${placement.cpus} ${tid}: ${(err as Error).message}`;
  }
}
