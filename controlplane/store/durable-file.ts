// Crash-safe file writes for everything the control plane keeps on disk (operator state, modules,
// filter records): write a temp file next to the target, fsync it, rename it over the target,
// fsync the directory. A crash leaves either the old file or the new one, never a torn one, and a
// completed write survives a power loss. A failed write removes its temp file and throws a
// StoreWriteError naming the file and the cause (EROFS, ENOSPC, ...); the target is untouched.

import fs from "node:fs/promises";
import path from "node:path";

/** A write to the state directory failed: nothing changed. Answered as 503 by the admin API. */
export class StoreWriteError extends Error {
  readonly statusCode = 503;
  constructor(message: string, readonly code: string | undefined) {
    super(message);
    this.name = "StoreWriteError";
  }
}

let seq = 0;

/** Temp files are `<target>.<pid>.<n>.tmp`: a kill mid-write leaves one that removeTempFiles() collects. */
export function tempPathFor(file: string): string {
  return `${file}.${process.pid}.${++seq}.tmp`;
}

/**
 * `serialized`: the caller never runs two writes of `file` at once (operator state chains them),
 * so one temp name per process, `<target>.<pid>.tmp`, is enough and a stale one is overwritten.
 */
export async function writeFileDurably(file: string, data: string | Uint8Array, opts: { serialized?: boolean } = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = opts.serialized ? `${file}.${process.pid}.tmp` : tempPathFor(file);
  let created = false;
  try {
    await fs.mkdir(dir, { recursive: true });
    const handle = await fs.open(tmp, opts.serialized ? "w" : "wx");
    created = true;
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
    created = false;
    await syncDir(dir);
  } catch (err) {
    if (created) await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw writeError(`cannot write ${file}`, err);
  }
}

/** Removes `file` and makes the removal durable; a missing file is not an error. */
export async function removeFileDurably(file: string): Promise<void> {
  try {
    await fs.rm(file, { force: true });
    await syncDir(path.dirname(file));
  } catch (err) {
    throw writeError(`cannot remove ${file}`, err);
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function writeError(what: string, err: unknown): StoreWriteError {
  if (err instanceof StoreWriteError) return new StoreWriteError(`${what}: ${err.message}`, err.code);
  const code = (err as NodeJS.ErrnoException).code;
  const reason = err instanceof Error ? err.message : String(err);
  return new StoreWriteError(`${what}: ${reason}`, code);
}

/** Removes temp files (`<prefix>*.tmp`) a killed process left in `dir`. */
export async function removeTempFiles(dir: string, prefix = ""): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  const stale = names.filter((n) => n.startsWith(prefix) && n.endsWith(".tmp"));
  await Promise.all(stale.map((n) => fs.rm(path.join(dir, n), { force: true }).catch(() => undefined)));
}

/**
 * Whether `dir` can be written, by writing, syncing and removing a probe file (creating `dir`
 * if needed). Undefined when it can; otherwise the error (EROFS, EACCES, ENOSPC, ...).
 */
export async function probeWritable(dir: string): Promise<StoreWriteError | undefined> {
  const probe = path.join(dir, `.probe.${process.pid}`);
  try {
    await writeFileDurably(probe, "probe\n");
    await fs.rm(probe, { force: true });
    return undefined;
  } catch (err) {
    return writeError(`state directory ${dir} is not writable`, err);
  }
}

/** Errors meaning the directory is read-only (as opposed to full or failing). */
export function isReadOnlyError(err: StoreWriteError): boolean {
  return err.code === "EROFS" || err.code === "EACCES" || err.code === "EPERM";
}
