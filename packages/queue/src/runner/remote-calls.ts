import { WorkerCrashedError, deserializeError } from '@kb-labs/plugin-execution-core';
import { callAfterEnd, callCutShort, type CallTarget, type HostToRunner, type RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';
import { decode } from '../shared/wire.js';

type RpcReply = Extract<HostToRunner, { type: 'rpc-reply' }>;

/**
 * The worker's side of one execution's `ctx.platform` and `ctx.channel` calls: each goes to the
 * calling host as an `rpc` message (where its governed gateway checks it) and waits for the
 * `rpc-reply`. Calls still pending at the end are rejected, never left hanging.
 */
export class RemoteCalls {
  readonly #send: (message: Extract<RunnerToHost, { type: 'rpc' }>) => void;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void; called: [CallTarget, string, string] }>();
  #nextId = 1;
  #closed = false;

  constructor(send: (message: Extract<RunnerToHost, { type: 'rpc' }>) => void) {
    this.#send = send;
  }

  /** Calls sent and not answered yet. */
  get pending(): number {
    return this.#pending.size;
  }

  call(target: 'platform' | 'channel', service: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.#closed) return Promise.reject(callAfterEnd(target, service, method));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, called: [target, service, method] });
      try {
        this.#send({ type: 'rpc', id, target, service, method, args });
      } catch (error) {
        this.#pending.delete(id);
        reject(error);
      }
    });
  }

  /** A reply's body; one this worker cannot read (a value of a newer Node) fails every call in flight (unreadableReply). */
  replyWith(body: Uint8Array, where: string): void {
    let message: RpcReply;
    try {
      message = decode<RpcReply>(body, "A platform or channel call's answer", where);
    } catch (error) {
      return this.unreadableReply(error);
    }
    this.reply(message);
  }

  reply(message: RpcReply): void {
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(deserializeError(message.error));
  }

  /**
   * A reply came that this worker cannot read (a value of a newer Node: shared/wire.ts decode):
   * which call it answered cannot be told, so each call in flight fails with `error`
   * (VALIDATION_ERROR naming this worker's Node) rather than one waiting for ever.
   */
  unreadableReply(error: unknown): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }

  /**
   * The connection to the server dropped: a call in flight, or its reply, may be lost with it.
   * Each fails now (the handler may retry it; it may or may not have reached the host), instead
   * of waiting for a reply that will not come.
   */
  connectionLost(): void {
    if (this.#pending.size === 0) return;
    const error = new WorkerCrashedError('The worker lost its connection to the NATS server while this call was in flight: it may or may not have reached the calling host', {
      details: { reason: 'runner-lost' },
    });
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }

  close(): void {
    this.#closed = true;
    if (this.#pending.size === 0) return;
    for (const { reject, called } of this.#pending.values()) reject(callCutShort(...called));
    this.#pending.clear();
  }
}
