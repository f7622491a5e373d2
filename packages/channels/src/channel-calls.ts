import { ValidationError } from '@kb-labs/plugin-execution-core';
import { readCloseArguments } from './close-codes.js';
import { type ChannelConnection, type ConnectionRegistry } from './connection-registry.js';

const MAX_EXCLUDE = 10_000;

/**
 * The host end of `ctx.channel` for the handler serving `caller`: arrives directly (in-process) or
 * over the runner RPC (worker-pool, subprocess). Arguments come from plugin code, so each is
 * checked; other connections are reachable only within the caller's channel. Never throws: a bad
 * call is a rejected promise, as it would be across a boundary. `ended`: the calling execution is
 * over (a paced send stops waiting, answering false).
 */
export function performChannelCall(caller: ChannelConnection, registry: ConnectionRegistry, method: string, args: unknown, ended?: AbortSignal): Promise<unknown> {
  try {
    return Promise.resolve(perform(caller, registry, method, Array.isArray(args) ? args : [], ended));
  } catch (error) {
    return Promise.reject(error);
  }
}

function perform(caller: ChannelConnection, registry: ConnectionRegistry, method: string, args: unknown[], ended: AbortSignal | undefined): unknown {
  switch (method) {
    case 'send':
      return paced(caller, registry.push(caller, args[0]), ended);
    case 'sendTo': {
      const target = peerOf(caller, registry, args[0], 'sendTo');
      return target ? paced(target, registry.send(target.id, args[1]), ended) : false;
    }
    case 'broadcast':
      return broadcast(caller, registry, args[0], args[1]);
    case 'close': {
      const { code, reason } = readCloseArguments('ctx.channel.close()', args[0], args[1]);
      const target = args[2] === undefined || args[2] === null ? caller : peerOf(caller, registry, args[2], 'close');
      if (!target?.isOpen) return false;
      target.close(code, reason);
      return true;
    }
    default:
      throw new ValidationError(`ctx.channel has no method "${String(method)}"`, { details: { method: String(method), reason: 'no-such-method' } });
  }
}

/**
 * What a send resolves with: false when the frame did not go (closed, or cut off for its backlog);
 * else true once the connection's backlog is back under half its limit, so that a handler that
 * awaits each send streams at its client's pace rather than filling the buffer until it is cut off
 * (or false once its execution is over: nothing waits on the host for an execution that ended).
 */
function paced(connection: ChannelConnection, sent: boolean, ended: AbortSignal | undefined): boolean | Promise<boolean> {
  if (!sent) return false;
  return connection.drained ? connection.drained(ended) : true;
}

function broadcast(caller: ChannelConnection, registry: ConnectionRegistry, data: unknown, rawOptions: unknown): number {
  if (rawOptions !== undefined && rawOptions !== null && (typeof rawOptions !== 'object' || Array.isArray(rawOptions))) {
    throw new ValidationError('ctx.channel.broadcast(): options must be an object { exclude?, scope? }');
  }
  const options = (rawOptions ?? {}) as { exclude?: unknown; scope?: unknown };
  // A misspelt option (`exlude`) would broadcast to everyone, the sender included.
  const unknown = Object.keys(options).filter((key) => key !== 'exclude' && key !== 'scope');
  if (unknown.length > 0) throw new ValidationError(`ctx.channel.broadcast(): unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (it takes exclude and scope)`);
  const exclude = options.exclude ?? [];
  if (!Array.isArray(exclude) || exclude.length > MAX_EXCLUDE || exclude.some((e) => typeof e !== 'string')) {
    throw new ValidationError('ctx.channel.broadcast(): options.exclude must be an array of connection ids');
  }
  if (options.scope !== undefined && options.scope !== 'channel' && options.scope !== 'path') {
    throw new ValidationError('ctx.channel.broadcast(): options.scope must be "channel" or "path"');
  }
  return registry.broadcast(caller.channel, data, { exclude: exclude as string[], ...(options.scope === 'path' ? { path: caller.info.path } : {}) });
}

/** Another connection of the caller's channel, or undefined when it is unknown or on another channel. */
function peerOf(caller: ChannelConnection, registry: ConnectionRegistry, id: unknown, method: string): ChannelConnection | undefined {
  if (typeof id !== 'string') throw new ValidationError(`ctx.channel.${method}(): the connection id must be a string`);
  const target = id === caller.id ? caller : registry.get(id);
  return target && target.channel === caller.channel ? target : undefined;
}
