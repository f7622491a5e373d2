import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuthenticateResult, ChannelErrorInfo, MountWebSocketChannelsOptions, UpgradeInfo } from './options.js';
import { clearTimeout, setTimeout } from '@kb-labs/plugin-execution-core/host-kit';

/** What an upgrade is answered with: refused with an HTTP `status`, or accepted with an optional identity. */
export interface UpgradeVerdict {
  status?: number;
  message?: string;
  identity?: unknown;
}

export type AuthenticateHook = NonNullable<MountWebSocketChannelsOptions['authenticate']>;

export interface AuthenticateCall {
  hook: AuthenticateHook;
  request: IncomingMessage;
  socket: Duplex;
  info: UpgradeInfo;
  timeoutMs: number;
  /** Where the call parks its cancel while it waits, so that unmount can answer it 503 at once. */
  pending: Set<(status: number) => void>;
  /** Where it is moved when its client resets while the hook still runs (the mount still bounds those). */
  departed: Set<(status: number) => void>;
  reportError: (error: unknown, info: ChannelErrorInfo) => void;
}

/**
 * Run the host's `authenticate` hook with a time limit. Never rejects: a hook that throws gives
 * 500, one that does not answer in time 503 (both reported), a cancel the status it is given.
 */
export function authenticateUpgrade(call: AuthenticateCall): Promise<UpgradeVerdict> {
  const { hook, request, socket, info, timeoutMs, pending, departed, reportError } = call;
  const report = (error: unknown) => reportError(error, { phase: 'authenticate', channel: info.channel });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (verdict: UpgradeVerdict) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      pending.delete(cancel);
      departed.delete(cancel);
      socket.off('error', onSocketError);
      socket.off('close', onSocketClose);
      resolve(verdict);
    };
    const cancel = (status: number) => finish({ status });
    // A client that resets while we wait must not raise an unhandled 'error'.
    const onSocketError = () => socket.destroy();
    // One whose client reset its connection no longer holds a place under maxConnections (a client
    // reconnecting after a drop is not refused meanwhile); the hook's answer, when it comes, finds
    // it gone. (A client that closes with a FIN is seen only then: the socket is not read before
    // the handshake, so that the frames behind it stay the WebSocket's.)
    const onSocketClose = () => {
      if (pending.delete(cancel)) departed.add(cancel);
    };
    socket.on('error', onSocketError);
    socket.once('close', onSocketClose);
    pending.add(cancel);
    const timer = setTimeout(() => {
      report(new Error(`authenticate() did not answer within ${timeoutMs} ms`));
      finish({ status: 503 });
    }, timeoutMs);
    Promise.resolve()
      .then(() => hook(request, info))
      .then(readVerdict)
      .then(finish, (error: unknown) => {
        report(error);
        finish({ status: 500 });
      });
  });
}

/** The identity as plain data (copied through JSON); one JSON cannot carry is the host's mistake, said as such (the upgrade gets a 500). */
function plainIdentity(identity: unknown): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(identity);
  } catch (error) {
    throw new TypeError(`authenticate() returned an identity JSON cannot carry: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (text === undefined) throw new TypeError(`authenticate() returned an identity JSON cannot carry (${typeof identity === 'object' ? 'its toJSON() gave nothing' : `a ${typeof identity}`}): give plain data (an object, a string, a number)`);
  return JSON.parse(text) as unknown;
}

/**
 * Normalise what `authenticate` returned; identity is copied through JSON so it is plain data.
 * A verdict of another shape (`{ allowed: true }`, `1`, a status that is no HTTP error) is the
 * host's mistake: thrown, so that the upgrade gets 500 and `onError` names it, not a silent 401.
 */
function readVerdict(result: AuthenticateResult): UpgradeVerdict {
  if (result === true) return {};
  if (result === false || result === null || result === undefined) return { status: 401 };
  // Read once, as plain values: a getter or Proxy of the host's answers one way to the check and another to the use.
  const verdict = verdictFields(result);
  const wrong = typeof verdict === 'string' ? verdict : verdictProblem(verdict);
  if (typeof verdict === 'string' || wrong) throw new TypeError(`authenticate() returned ${wrong}: return true, false, { allow: true, identity? } or { allow: false, status?, message? }`);
  if (verdict.allow === true) {
    return verdict.identity === undefined ? {} : { identity: plainIdentity(verdict.identity) };
  }
  return { status: (verdict.status as number | undefined) ?? 401, ...(verdict.message !== undefined ? { message: verdict.message as string } : {}) };
}

const VERDICT_KEYS = ['allow', 'identity', 'status', 'message'];

/** The verdict's own keys (an unknown one named), each read once; a value of another kind is said as such. */
function verdictFields(result: unknown): Record<string, unknown> | string {
  if (typeof result !== 'object' || Array.isArray(result)) return `${Array.isArray(result) ? 'an array' : `a ${typeof result}`} (${String(result).slice(0, 40)})`;
  const keys = Reflect.ownKeys(result as object);
  const unknown = keys.find((key) => typeof key !== 'string' || !VERDICT_KEYS.includes(key));
  if (unknown !== undefined) return `an object with the unknown key ${String(typeof unknown === 'string' ? JSON.stringify(unknown) : unknown.toString())}`;
  const fields: Record<string, unknown> = {};
  for (const key of keys as string[]) fields[key] = (result as Record<string, unknown>)[key];
  return fields;
}

/** What is wrong with a verdict's fields (verdictFields), or undefined when nothing is. */
function verdictProblem(verdict: Record<string, unknown>): string | undefined {
  if (typeof verdict.allow !== 'boolean') return `an object whose allow is ${verdict.allow === undefined ? 'missing' : `not a boolean (${typeof verdict.allow})`}`;
  if (verdict.allow && (verdict.status !== undefined || verdict.message !== undefined)) return 'allow: true with a status or message (those are for a refusal)';
  if (!verdict.allow && verdict.identity !== undefined) return 'allow: false with an identity (that is for an acceptance)';
  const status = verdict.status;
  if (status !== undefined && !(Number.isInteger(status) && (status as number) >= 400 && (status as number) <= 599)) return `status ${typeof status === 'string' ? JSON.stringify(status) : String(status)}, which is no HTTP error status (400-599)`;
  if (verdict.message !== undefined && typeof verdict.message !== 'string') return `a message that is not a string (${typeof verdict.message})`;
  return undefined;
}
