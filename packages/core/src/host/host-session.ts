import { serializeErrorForRunner, type SerializedError } from '../error-wire.js';
import { describeThrown, isError } from '../wire-value.js';
import { ValidationError } from '../errors.js';
import type { LogEntry } from './request.js';
import { LargeAnswerTurns, isLargeAnswer } from './large-answer-turns.js';
import { hostLogFields, hostLogMessage, unserializableError, type HostToRunner, type RunnerResult, type RunnerToHost } from '../protocol.js';

/** Host-side services an out-of-process backend wires a runner's messages to. */
export interface HostServices {
  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined, stream?: LogEntry['stream']): void;
  emit(event: unknown): void;
  callPlatform(service: string, method: string, args: unknown[]): Promise<unknown>;
  callChannel(method: string, args: unknown[]): Promise<unknown>;
  /** Whether a handler whose `beginBy` passed may still begin (ExecuteOptions.beginBy); false stops the execution. */
  mayBegin(): boolean;
}

type Reply = Extract<HostToRunner, { type: 'rpc-reply' }>;

/**
 * Host side of one execution: answers a runner's RPCs through the governed platform gateway,
 * forwards logs and events, and turns the runner's `result` into data or an ExecutionError.
 * Replies after the execution has ended are dropped.
 */
export class HostSession {
  readonly #services: HostServices;
  readonly #send: (message: HostToRunner) => void;
  #closed = false;
  /** A `may-begin` came, or something only a begun handler sends (a log line, an event, a call): no `may-begin` is answered after that. */
  #beginAsked = false;
  /** Replies in the order their calls settle, a large one in a turn of the event loop of its own. */
  readonly #turns = new LargeAnswerTurns();

  constructor(services: HostServices, send: (message: HostToRunner) => void) {
    this.#services = services;
    this.#send = send;
  }

  /** Handle one runner message; returns the result message when the runner finished. */
  handle(message: RunnerToHost): RunnerResult | undefined {
    switch (message?.type) {
      case 'log':
        this.#beginAsked = true;
        this.#services.log(message.level, hostLogMessage(String(message.message)), hostLogFields(message.fields), 'logger');
        return undefined;
      case 'event':
        this.#beginAsked = true;
        this.#services.emit(message.event);
        return undefined;
      case 'rpc':
        this.#beginAsked = true;
        this.#answer(message);
        return undefined;
      case 'may-begin':
        this.#answerBegin();
        return undefined;
      case 'result':
        this.#closed = true;
        return message;
      default:
        return undefined;
    }
  }

  /** Stop answering (the execution is over or the runner is gone). */
  close(): void {
    this.#closed = true;
  }

  /**
   * The runtime asks once per execution, before its handler can send anything. A question after
   * that, or a second one, is plugin code writing to a child's channel: not answered (its handler
   * has begun, so it cannot be refused as one that had not; nor can replies pile up in the host).
   */
  #answerBegin(): void {
    if (this.#closed || this.#beginAsked) return;
    this.#beginAsked = true;
    try {
      this.#send({ type: 'begin', ok: this.#services.mayBegin() });
    } catch {
      // The transport itself is gone; the execution's own failure path reports it.
    }
  }

  #answer(message: Extract<RunnerToHost, { type: 'rpc' }>): void {
    const { id, target, service, method } = message;
    const args = Array.isArray(message.args) ? message.args : [];
    // Named as the handler called it, in what goes back: `platform.kv.get`, `channel.send`.
    const called = target === 'channel' ? `channel.${String(method)}` : `platform.${String(service)}.${String(method)}`;
    const call =
      target === 'channel'
        ? this.#services.callChannel(String(method), args)
        : this.#services.callPlatform(String(service), String(method), args);
    call.then(
      (value) => this.#inTurn({ type: 'rpc-reply', id, ok: true, value }, called),
      (error: unknown) => this.#inTurn({ type: 'rpc-reply', id, ok: false, error: hostCallError(error, called) }, called),
    );
  }

  /** Replies now, unless a large reply went in this turn: then in order, once the event loop has turned (not at all once the execution is over). */
  #inTurn(reply: Reply, called: string): void {
    this.#turns.run(() => {
      if (this.#closed) return false;
      this.#reply(reply, reply.id, called);
      return reply.ok && isLargeAnswer(reply.value);
    });
  }

  #reply(message: HostToRunner, id: number, called: string): void {
    if (this.#closed) return;
    try {
      this.#send(message);
    } catch (error) {
      if (this.#closed) return;
      // A transport that said it already (the queue's encoder: "platform call result cannot be sent…") is said once, as this call's.
      const said = error instanceof ValidationError && error.cause !== undefined && /^(not-serializable|too-deep)$/.test(String(error.details.reason)) ? error.cause : error;
      const wire = serializeErrorForRunner(unserializableError(`${called} result`, said, message.type === 'rpc-reply' && message.ok ? message.value : undefined), `${called} (the host)`);
      try {
        this.#send({ type: 'rpc-reply', id, ok: false, error: wire });
      } catch {
        // The transport itself is gone; the execution's own failure path reports it.
      }
    }
  }
}

/**
 * What the host's side of a platform or channel call (`called`: `platform.kv.get`) threw, as the
 * handler gets it: serialised with its stack cut to the call (`at platform.kv.get (the host)`), so
 * the host's frames and paths stay the host's; a non-Error thrown, an Error saying what it was.
 */
export function hostCallError(error: unknown, called: string): SerializedError {
  return serializeErrorForRunner(isError(error) ? error : new Error(describeThrown(error, called)), `${called} (the host)`);
}
