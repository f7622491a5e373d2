const apply = Reflect.apply;

/**
 * Wrap the functions `names` of `target` (those it has), before any plugin code runs, so that a
 * call of one is seen: what Node can neither list nor undo once done (module hooks, environment
 * data, V8 promise hooks). Whether one was called since, or a wrapper replaced or removed. The
 * caller brings Node's ES module view of the built-in in line (syncBuiltinESMExports) where that
 * view exists.
 */
export function watchCalls(target: Record<string, unknown>, names: readonly string[]): () => boolean {
  let called = false;
  const wrappers = new Map<string, unknown>();
  for (const name of names) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    const wrapper = function watched(this: unknown, ...args: unknown[]): unknown {
      called = true;
      return apply(original as (...a: unknown[]) => unknown, this, args);
    };
    wrappers.set(name, (target[name] = wrapper));
  }
  return () => called || [...wrappers].some(([name, wrapper]) => target[name] !== wrapper);
}
