/**
 * `each` over `items`, `size` at a time, settled as `Promise.allSettled` settles them (in order).
 * For file-system work over thousands of plugins: their answers landing together held the host's
 * event loop for a tenth of a second and more; a group at a time, each turn takes a few.
 */
export async function settledInGroups<T, R>(items: readonly T[], size: number, each: (item: T, index: number) => R | Promise<R>): Promise<PromiseSettledResult<Awaited<R>>[]> {
  const settled: PromiseSettledResult<Awaited<R>>[] = [];
  for (let at = 0; at < items.length; at += size) {
    const group = items.slice(at, at + size).map((item, i) => Promise.resolve().then(() => each(item, at + i)));
    settled.push(...(await Promise.allSettled(group)));
  }
  return settled;
}
