// Request/reply over a child's message channel (IPC or line-delimited JSON): every command gets
// an id, the reply carrying it settles the call. Used by the fan-out benchmark's drivers.

/** Omit over each member of a union (plain Omit would collapse the union to common keys). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class Rpc<Command extends { id: number }, Reply extends { id: number }> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closed: Error | undefined;

  constructor(private readonly what: string, private readonly send: (c: Command) => void) {}

  call<R extends Reply = Reply>(cmd: DistributiveOmit<Command, "id">, timeoutMs: number): Promise<R> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.what}: no reply to ${JSON.stringify(cmd).slice(0, 80)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as R);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      // Re-adding the id omitted above gives back a Command (TypeScript cannot see through the union).
      this.send({ ...cmd, id } as unknown as Command);
    });
  }

  /** Feed a message from the child; returns false if it was not a reply to a pending call. */
  onMessage(m: unknown): boolean {
    if (typeof m !== "object" || m === null || typeof (m as { id?: unknown }).id !== "number") return false;
    const p = this.pending.get((m as Reply).id);
    if (!p) return false;
    this.pending.delete((m as Reply).id);
    p.resolve(m as Reply);
    return true;
  }

  /** The child is gone: every pending and later call fails with `err`. */
  close(err: Error): void {
    this.closed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
