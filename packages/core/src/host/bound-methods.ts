/** The methods of a backend a host may take off it: `const { execute } = backend`, `jobs.map(backend.execute)`, `router.post('/run', backend.execute)`. */
const BACKEND_METHODS = ['execute', 'stats', 'health', 'shutdown', 'onShutdown', 'ready', 'registerPlugin', 'reloadPlugin'] as const;

/**
 * Binds each of BACKEND_METHODS that `backend` has to it, as an own property that is not
 * enumerable: called without its object, a class method would throw a TypeError about a private
 * field ("Cannot read properties of undefined (reading '#backend')"), where `execute()` promises
 * never to throw. The most derived override is the one bound.
 */
export function bindBackendMethods(backend: object): void {
  for (const name of BACKEND_METHODS) {
    const method: unknown = (backend as Record<string, unknown>)[name];
    if (typeof method === 'function') Object.defineProperty(backend, name, { value: method.bind(backend), writable: true, configurable: true, enumerable: false });
  }
}
