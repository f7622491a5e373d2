function noop(): void {}

/**
 * What an execution took, given back once, newest first, on every path: a failure before
 * dispatch, a result, a stop. Releases run even when one of them fails.
 */
export class Holdings {
  readonly #releases: Array<() => unknown> = [];

  hold(release: () => unknown): void {
    this.#releases.push(release);
  }

  /** Settles once all are given back; synchronous (undefined) when none of them had to wait. */
  releaseAll(): Promise<void> | undefined {
    for (let release = this.#releases.pop(); release; release = this.#releases.pop()) {
      let pending: unknown;
      try {
        pending = release();
      } catch {
        continue;
      }
      if (pending instanceof Promise) return pending.catch(noop).then(() => this.releaseAll());
    }
    return undefined;
  }
}
