/** The methods of a backend a host may take off it: `const { execute } = backend`, `.then(backend.execute)`, `router.post('/run', backend.execute)`. */
const BACKEND_METHODS: readonly PropertyKey[] = ['execute', 'stats', 'health', 'shutdown', 'onShutdown', 'ready', 'registerPlugin', 'reloadPlugin', Symbol.asyncDispose];

/**
 * Gives `backend` each of BACKEND_METHODS it has as an own property, not enumerable, that calls
 * the method on it: called without its object, a class method would throw a TypeError about a
 * private field ("Cannot read properties of undefined (reading '#backend')"), where `execute()`
 * promises never to throw. The method is looked up on the prototype chain at each call, so a
 * subclass's override, or a prototype wrapped later (a spy, an APM instrumentation), is the one
 * called.
 */
export function bindBackendMethods(backend: object): void {
  const proto = Object.getPrototypeOf(backend) as Record<PropertyKey, unknown>;
  for (const name of BACKEND_METHODS) {
    if (typeof proto[name as string] !== 'function') continue;
    const call = (...args: unknown[]) => (proto[name as string] as (...a: unknown[]) => unknown).apply(backend, args);
    Object.defineProperty(backend, name, { value: call, writable: true, configurable: true, enumerable: false });
  }
}
