import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuthenticateResult, ChannelErrorInfo, MountWebSocketChannelsOptions, UpgradeInfo } from './options.js';

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

/** Normalise what `authenticate` returned; identity is copied through JSON so it is plain data. */
function readVerdict(result: AuthenticateResult): UpgradeVerdict {
  if (result === true) return {};
  if (result === false || result === null || result === undefined || typeof result !== 'object') return { status: 401 };
  if (result.allow === true) {
    return result.identity === undefined ? {} : { identity: plainIdentity(result.identity) };
  }
  const status = result.status === 403 ? 403 : 401;
  return { status, ...(typeof result.message === 'string' ? { message: result.message } : {}) };
}
