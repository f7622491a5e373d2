/** The methods of a backend a host may take off it: `const { execute } = backend`, `.then(backend.execute)`, `router.post('/run', backend.execute)`. */
const BACKEND_METHODS: readonly PropertyKey[] = ['execute', 'stats', 'health', 'shutdown', 'onShutdown', 'ready', 'registerPlugin', 'reloadPlugin', 'unregisterPlugin', Symbol.asyncDispose];

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
    const original = proto[name as string];
    if (typeof original !== 'function') continue;
    const call = (...args: unknown[]): unknown => {
      const method = proto[name as string];
      // One of these copied onto the prototype (`Class.prototype.health = backend.health`) would call itself.
      return (typeof method === 'function' && !calls.has(method) ? method : original).apply(backend, args);
    };
    calls.add(call);
    Object.defineProperty(backend, name, { value: call, writable: true, configurable: true, enumerable: false });
  }
}

const calls = new WeakSet<object>();
