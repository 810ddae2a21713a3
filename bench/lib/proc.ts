/** CPU time and memory of a process from /proc (Linux), for per-request cost attribution. */
import fs from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux the bench targets (getconf CLK_TCK)

/** user + system CPU milliseconds the process has used so far (NaN if it is gone). */
export function cpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Resident set size in MiB (NaN if the process is gone). */
export function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}
