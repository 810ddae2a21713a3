// Runs async jobs one at a time per key (a filter name), in call order; jobs of other keys run
// freely. A failed job does not stop the ones queued behind it. Empty chains are dropped, so
// memory follows the keys with work in flight.

export class KeyedChain {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prior = this.tails.get(key) ?? Promise.resolve();
    const next = prior.catch(() => undefined).then(fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}
