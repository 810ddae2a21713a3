// Where modules live, by content address. The interface is what the registry, the module server
// and the build cache use; DirModuleStore keeps them under the state directory (the default), and
// a shared store (etcd, issue 11 part 3) can implement the same interface without touching them.

import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { ModuleCapabilities } from "../compile/capabilities.ts";
import { removeFileDurably, removeTempFiles, writeError, writeFileDurably } from "./durable-file.ts";

export interface ModuleMeta {
  /** Lowercase hex sha256 of the bytes: the module's name everywhere. */
  sha256: string;
  size: number;
  /** The filter it was first stored for (identical bytes of another filter share the entry). */
  filter: string;
  source: "build" | "upload";
  rootId: string;
  capabilities?: ModuleCapabilities;
  /** Hash of the build's inputs (compile/build-key.ts); absent for uploads. */
  buildKey?: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601, when last stored (shared stores: collection grace); absent: createdAt. */
  storedAt?: string;
}

export interface ModuleStore {
  /** Stores bytes and metadata durably; a module already stored is kept as it is. Throws StoreWriteError. */
  put(bytes: Uint8Array, meta: ModuleMeta): Promise<void>;
  /** The bytes, checked against their sha256; undefined when absent or damaged. */
  get(sha256: string): Promise<Uint8Array | undefined>;
  list(): Promise<ModuleMeta[]>;
  delete(sha256: string): Promise<void>;
}

const SHA256 = /^[0-9a-f]{64}$/;

export function sha256Of(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * `<dir>/<sha256>.wasm` (bytes) and `<dir>/<sha256>.json` (metadata), each written crash-safely;
 * the bytes first, so metadata never names a module that is not there. A file name is only ever
 * built from a validated sha256.
 */
export class DirModuleStore implements ModuleStore {
  constructor(readonly dir: string) {}

  /** Removes temp files a killed process left behind. */
  async open(): Promise<void> {
    await removeTempFiles(this.dir);
  }

  async put(bytes: Uint8Array, meta: ModuleMeta): Promise<void> {
    const sha = checked(meta.sha256);
    if (sha256Of(bytes) !== sha) throw new Error(`module store: bytes do not hash to ${sha}`);
    if (await this.has(sha, bytes.byteLength)) return;
    await writeFileDurably(this.file(sha, "wasm"), bytes);
    await writeFileDurably(this.file(sha, "json"), JSON.stringify(meta, null, 2) + "\n");
  }

  async get(sha256: string): Promise<Uint8Array | undefined> {
    if (!SHA256.test(sha256)) return undefined;
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(this.file(sha256, "wasm"));
    } catch {
      return undefined;
    }
    // A damaged file (disk error, a hand edit) must never be served under this name.
    if (sha256Of(bytes) !== sha256) return undefined;
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async list(): Promise<ModuleMeta[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const metas: ModuleMeta[] = [];
    const shas = new Set<string>();
    for (const name of names) {
      const m = /^([0-9a-f]{64})\.(wasm|json)$/.exec(name);
      if (m) shas.add(m[1]!);
    }
    for (const sha of [...shas].sort()) {
      const meta = await this.readMeta(sha);
      // Bytes without metadata (a crash between the two writes) still count, so GC finds them.
      metas.push(meta ?? { sha256: sha, size: 0, filter: "", source: "build", rootId: "", createdAt: new Date(0).toISOString() });
    }
    return metas;
  }

  async delete(sha256: string): Promise<void> {
    const sha = checked(sha256);
    // Metadata first: a crash in between leaves bytes without metadata, which list() still reports.
    await removeFileDurably(this.file(sha, "json"));
    await removeFileDurably(this.file(sha, "wasm"));
  }

  private async has(sha: string, size: number): Promise<boolean> {
    try {
      const [bytes] = await Promise.all([fs.stat(this.file(sha, "wasm")), fs.stat(this.file(sha, "json"))]);
      return bytes.size === size;
    } catch {
      return false;
    }
  }

  private async readMeta(sha: string): Promise<ModuleMeta | undefined> {
    try {
      const meta = JSON.parse(await fs.readFile(this.file(sha, "json"), "utf8")) as ModuleMeta;
      return meta.sha256 === sha ? meta : undefined;
    } catch {
      return undefined;
    }
  }

  private file(sha: string, ext: "wasm" | "json"): string {
    return path.join(this.dir, `${sha}.${ext}`);
  }
}

function checked(sha256: string): string {
  if (!SHA256.test(sha256)) throw writeError("module store", new Error(`not a sha256: ${JSON.stringify(sha256)}`));
  return sha256;
}

/** An in-memory store (tests, and the registry when no state directory is configured). */
export class MemoryModuleStore implements ModuleStore {
  private readonly modules = new Map<string, { bytes: Uint8Array; meta: ModuleMeta }>();

  async put(bytes: Uint8Array, meta: ModuleMeta): Promise<void> {
    if (!this.modules.has(meta.sha256)) this.modules.set(meta.sha256, { bytes, meta });
  }

  async get(sha256: string): Promise<Uint8Array | undefined> {
    return this.modules.get(sha256)?.bytes;
  }

  async list(): Promise<ModuleMeta[]> {
    return [...this.modules.values()].map((m) => m.meta);
  }

  async delete(sha256: string): Promise<void> {
    this.modules.delete(sha256);
  }
}
