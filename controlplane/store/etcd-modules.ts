// Modules in etcd: bytes in chunks under `modules/<sha256>/c/<n>` (etcd refuses requests over
// 1.5 MiB by default, and a module may be larger), then `modules/<sha256>/meta` naming the chunk
// count. The metadata goes last, so a module is listed only once all its bytes are stored; a
// read checks the bytes against their sha256. The bytes live in etcd, replicated by its members:
// no replica's death loses a module.

import { sha256Of, type ModuleMeta, type ModuleStore } from "./module-store.ts";
import type { EtcdConnection } from "./etcd-connection.ts";

export const MODULES_PREFIX = "modules/";
/** Below etcd's default 1.5 MiB request limit, with room for the key and the request frame. */
export const CHUNK_BYTES = 1024 * 1024;

const SHA256 = /^[0-9a-f]{64}$/;

interface StoredMeta extends ModuleMeta {
  chunks: number;
}

export class EtcdModuleStore implements ModuleStore {
  constructor(private readonly etcd: EtcdConnection) {}

  async put(bytes: Uint8Array, meta: ModuleMeta): Promise<void> {
    const sha = checked(meta.sha256);
    if (sha256Of(bytes) !== sha) throw new Error(`module store: bytes do not hash to ${sha}`);
    const chunks = Math.max(1, Math.ceil(bytes.byteLength / CHUNK_BYTES));
    await this.etcd.call(`cannot store module ${sha}`, async (ns) => {
      const prior = await this.readMeta(sha);
      if (!prior || prior.size !== bytes.byteLength) {
        for (let i = 0; i < chunks; i++) {
          const part = bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
          await ns.put(chunkKey(sha, i)).value(Buffer.from(part.buffer, part.byteOffset, part.byteLength)).exec();
        }
      }
      // Written (again) even when the bytes are there: storedAt restarts collection's grace.
      const stored: StoredMeta = { ...(prior ?? meta), storedAt: new Date().toISOString(), chunks };
      await ns.put(metaKey(sha)).value(JSON.stringify(stored)).exec();
    });
  }

  async get(sha256: string): Promise<Uint8Array | undefined> {
    if (!SHA256.test(sha256)) return undefined;
    return this.etcd.call(`cannot read module ${sha256}`, async (ns) => {
      const meta = await this.readMeta(sha256);
      if (!meta) return undefined;
      const res = await ns.getAll().prefix(`${MODULES_PREFIX}${sha256}/c/`).exec();
      const parts = res.kvs
        .map((kv) => ({ i: Number(kv.key.toString("utf8").split("/").at(-1)), value: kv.value }))
        .sort((a, b) => a.i - b.i);
      if (parts.length !== meta.chunks || parts.some((p, i) => p.i !== i)) return undefined;
      const bytes = Buffer.concat(parts.map((p) => p.value));
      // Damaged or half-replaced bytes are never served under this name.
      if (sha256Of(bytes) !== sha256) return undefined;
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    });
  }

  async list(): Promise<ModuleMeta[]> {
    return this.etcd.call("cannot list modules", async (ns) => {
      const res = await ns.getAll().prefix(MODULES_PREFIX).keys();
      const shas = new Set<string>();
      for (const key of res) {
        const m = /^modules\/([0-9a-f]{64})\//.exec(key);
        if (m) shas.add(m[1]!);
      }
      const metas: ModuleMeta[] = [];
      for (const sha of [...shas].sort()) {
        // Chunks without metadata (a writer died mid-put) still count, so collection finds them.
        metas.push((await this.readMeta(sha)) ?? { sha256: sha, size: 0, filter: "", source: "build", rootId: "", createdAt: new Date(0).toISOString() });
      }
      return metas;
    });
  }

  async delete(sha256: string): Promise<void> {
    const sha = checked(sha256);
    // One range delete: the metadata and every chunk go together.
    await this.etcd.call(`cannot delete module ${sha}`, (ns) => ns.delete().prefix(`${MODULES_PREFIX}${sha}/`).exec());
  }

  private async readMeta(sha: string): Promise<StoredMeta | undefined> {
    const value = await this.etcd.ns.get(metaKey(sha)).string();
    if (value === null) return undefined;
    try {
      const meta = JSON.parse(value) as StoredMeta;
      return meta.sha256 === sha && Number.isInteger(meta.chunks) ? meta : undefined;
    } catch {
      return undefined;
    }
  }
}

function metaKey(sha: string): string {
  return `${MODULES_PREFIX}${sha}/meta`;
}

function chunkKey(sha: string, i: number): string {
  return `${MODULES_PREFIX}${sha}/c/${String(i).padStart(4, "0")}`;
}

function checked(sha256: string): string {
  if (!SHA256.test(sha256)) throw new Error(`module store: not a sha256: ${JSON.stringify(sha256)}`);
  return sha256;
}
