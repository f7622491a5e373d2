import { AbortedError } from '../errors.js';

/** Which of a handler's context objects a call went through. */
export type CallTarget = 'platform' | 'channel';

/** The call as the handler wrote it: `platform.kv.get`, `ctx.channel.send`. */
export function callName(target: CallTarget, service: string, method: string): string {
  return target === 'platform' ? `platform.${String(service)}.${String(method)}` : `ctx.channel.${String(method)}`;
}

/** `service` and `method` of a platform call, `method` of a channel call: what ABORTED's details name a call by. */
function callDetails(target: CallTarget, service: string, method: string): { service?: string; method: string } {
  return target === 'platform' ? { service: String(service), method: String(method) } : { method: String(method) };
}

/** ABORTED (`phase: 'ended'`) for a call the handler made after its execution ended, naming the call. */
export function callAfterEnd(target: CallTarget, service: string, method: string): AbortedError {
  return new AbortedError(`${callName(target, service, method)} was called after the execution ended`, {
    details: { phase: 'ended', ...callDetails(target, service, method) },
  });
}

/**
 * ABORTED (`phase: 'rpc'`) for a call still pending when its execution ended or was stopped,
 * naming the call: `what` says what happened to it (`ended while … was pending`).
 */
export function callCutShort(target: CallTarget, service: string, method: string, what = (call: string) => `The execution ended while ${call} was pending`): AbortedError {
  return new AbortedError(what(callName(target, service, method)), { details: { phase: 'rpc', ...callDetails(target, service, method) } });
}
