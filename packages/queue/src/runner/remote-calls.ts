import { AbortedError, deserializeError, type Platform } from '@kb-labs/plugin-execution-core';
import type { HostToRunner, RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';

type RpcReply = Extract<HostToRunner, { type: 'rpc-reply' }>;

/**
 * The worker's side of one execution's `ctx.platform` and `ctx.channel` calls: each goes to the
 * calling host as an `rpc` message (where its governed gateway checks it) and waits for the
 * `rpc-reply`. Calls still pending at the end are rejected, never left hanging.
 */
export class RemoteCalls {
  readonly #send: (message: Extract<RunnerToHost, { type: 'rpc' }>) => void;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  #nextId = 1;
  #closed = false;

  constructor(send: (message: Extract<RunnerToHost, { type: 'rpc' }>) => void) {
    this.#send = send;
  }

  call(target: 'platform' | 'channel', service: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.#closed) return Promise.reject(new AbortedError(`${target} call after the execution ended`, { details: { phase: 'ended', service, method } }));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        this.#send({ type: 'rpc', id, target, service, method, args });
      } catch (error) {
        this.#pending.delete(id);
        reject(error);
      }
    });
  }

  reply(message: RpcReply): void {
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(deserializeError(message.error));
  }

  close(): void {
    this.#closed = true;
    if (this.#pending.size === 0) return;
    const error = new AbortedError('The execution ended while this call was pending', { details: { phase: 'rpc' } });
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }

  /**
   * The services object the worker's local backend hands its gateway: every service exists, and
   * every method goes to the calling host, except the worker's own services (`local`), used as
   * they are. The local gateway checks the handler's declared permissions first, the host's after.
   */
  platform(local: Platform | undefined): Platform {
    const services = new Map<string, unknown>();
    const service = (name: string): unknown => {
      if (local && Object.hasOwn(local, name)) return local[name];
      let proxy = services.get(name);
      if (!proxy) services.set(name, (proxy = remoteService((method, args) => this.call('platform', name, method, args))));
      return proxy;
    };
    return new Proxy(Object.create(null) as Platform, {
      get: (_target, name) => (typeof name === 'string' ? service(name) : undefined),
      getOwnPropertyDescriptor: (_target, name) => (typeof name === 'string' ? { value: service(name), enumerable: true, configurable: true, writable: false } : undefined),
    });
  }
}

function remoteService(call: (method: string, args: unknown[]) => Promise<unknown>): object {
  const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  return new Proxy(Object.create(null) as object, {
    get: (_target, method) => {
      if (typeof method !== 'string' || method === 'then') return undefined;
      let fn = methods.get(method);
      if (!fn) methods.set(method, (fn = (...args: unknown[]) => call(method, args)));
      return fn;
    },
  });
}
