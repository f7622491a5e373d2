/**
 * One value for the whole process (the thread), whichever copy of core asks for it: a host may have
 * both builds loaded (an ES host whose dependency `require()`s a backend, a CommonJS host that
 * `import()`s one) or two installs of core, and a bound or a warning said "per process" must not
 * split into one per copy. Kept on a global symbol named `@kb-labs/plugin-execution/<name>`; made
 * by `make` for the first copy that asks. Host-side state only: a runner's globals are its plugins'.
 */
export function processShared<T>(name: string, make: () => T): T {
  return ((globalThis as Record<symbol, unknown>)[sharedKey(name)] ??= make()) as T;
}

/** The value `processShared(name, …)` made, if a copy has made it; nothing is made here. */
export function processSharedIfMade<T>(name: string): T | undefined {
  return (globalThis as Record<symbol, unknown>)[sharedKey(name)] as T | undefined;
}

function sharedKey(name: string): symbol {
  return Symbol.for(`@kb-labs/plugin-execution/${name}`);
}
