/**
 * `ctx.platform` as a handler sees it: an object shaped like the host's services whose every
 * method call goes to one function (the permission gate in the host, or a message to it from a
 * runner elsewhere). Runner-side code: nothing here may import a schema (see runner.ts).
 */

/** The host's services object: `{ [service]: { [method](...args): Promise<unknown> } }`. */
export type Platform = Record<string, unknown>;

export type PlatformCall = (service: string, method: string, args: unknown[]) => Promise<unknown>;

/** A `platform.svc.method(...args)` shaped object over any call function (local or remote). */
export function createPlatformProxy(call: PlatformCall): Platform {
  const services = new Map<string, object>();
  return new Proxy(Object.create(null) as Platform, {
    get(_target, service) {
      if (typeof service !== 'string' || service === 'then') return undefined;
      let proxy = services.get(service);
      if (!proxy) {
        const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
        proxy = new Proxy(Object.create(null) as object, {
          get(_t, method) {
            if (typeof method !== 'string' || method === 'then') return undefined;
            let fn = methods.get(method);
            if (!fn) {
              fn = (...args: unknown[]) => {
                try {
                  return call(service, method, args);
                } catch (error) {
                  return Promise.reject(error);
                }
              };
              methods.set(method, fn);
            }
            return fn;
          },
          set: () => false,
          defineProperty: () => false,
        });
        services.set(service, proxy);
      }
      return proxy;
    },
    set: () => false,
    defineProperty: () => false,
  });
}
