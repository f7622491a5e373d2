import type { ContextDescriptor, ExecuteOptions, ExecutionError, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { settlesWithin, toHandlerError } from '@kb-labs/plugin-execution-core/host-kit';
import type { ConnectionRegistry } from './connection-registry.js';
import type { ChannelErrorInfo, MountWebSocketChannelsOptions } from './options.js';

/** Why the server ended a connection on its own, told to the disconnect handler as `cause`; `protocol`: the client broke the WebSocket protocol (a frame too large, bad UTF-8, an unmasked frame), which ws answers by closing. */
export type CloseCause = 'heartbeat-timeout' | 'backpressure' | 'unmount' | 'protocol';

/** The limits that apply to one channel, after manifest values and host defaults are merged. */
export interface ChannelLimits {
  concurrency: number;
  maxInFlight: number;
  timeoutMs: number | undefined;
  maxBufferedBytes: number;
}

/** Counters a mount keeps; its sessions bump them. */
export interface MountCounters {
  framesIn: number;
  framesOut: number;
  errorFrames: number;
  badFrames: number;
  /** Messages refused because their connection had `maxInFlight` in flight (the backend's own QUEUE_FULL is a failed execution). */
  queueFull: number;
  /** Connect, message and disconnect executions (a disconnect retried while the backend's queue was full counts once). */
  executions: number;
  /** Of those, the ones that ended in an error. */
  failedExecutions: number;
  /** Connections whose connect handler refused them. */
  denied: number;
  heartbeatTimeouts: number;
  backpressureCloses: number;
}

export function createMountCounters(): MountCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    errorFrames: 0,
    badFrames: 0,
    queueFull: 0,
    executions: 0,
    failedExecutions: 0,
    denied: 0,
    heartbeatTimeouts: 0,
    backpressureCloses: 0,
  };
}

/** What a session needs from its mount: one per mounted channel, shared by its connections. */
export interface SessionRuntime {
  backend: IExecutionBackend;
  registry: ConnectionRegistry;
  pluginId: string;
  handlerId: string;
  limits: ChannelLimits;
  counters: MountCounters;
  sendReady: boolean;
  abortOnClose: boolean;
  /** How long a client has to answer a close the server sent before its socket is destroyed. */
  closeTimeoutMs: number;
  formatError: (error: ExecutionError, info: ChannelErrorInfo) => { code: string; message: string };
  reportError: (error: unknown, info: ChannelErrorInfo) => void;
  onLog: MountWebSocketChannelsOptions['onLog'];
  onEvent: MountWebSocketChannelsOptions['onEvent'];
}

/** What one execution of a channel's handler came to. */
export type Outcome = { ok: true; data: unknown } | { ok: false; error: ExecutionError };

/** One execution of the channel's handler; never rejects (the interface promises execute() never does; a foreign backend might). */
export async function runChannelHandler(rt: SessionRuntime, context: ContextDescriptor, input: Record<string, unknown>, options: ExecuteOptions): Promise<Outcome> {
  try {
    const result = await rt.backend.execute({ pluginId: rt.pluginId, handlerId: rt.handlerId, input, context }, options);
    return result.ok ? { ok: true, data: result.data } : { ok: false, error: result.error };
  } catch (error) {
    return { ok: false, error: toHandlerError(error) };
  }
}

/**
 * One execution of the channel's handler, tried again after a growing pause while the backend's
 * queue is full, until it runs or `options.signal` aborts: a hard stop ends a pause too (an
 * unmount waits for what it stopped, and a try after the abort would only be aborted).
 */
export async function runWhileQueueFull(rt: SessionRuntime, context: ContextDescriptor, input: Record<string, unknown>, options: ExecuteOptions & { signal: AbortSignal }): Promise<Outcome> {
  const { signal } = options;
  let result = await runChannelHandler(rt, context, input, options);
  let stopped: Promise<unknown> | undefined;
  for (let waitMs = 10; !result.ok && result.error.code === 'QUEUE_FULL' && !signal.aborted; waitMs = Math.min(waitMs * 2, 500)) {
    stopped ??= new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    if (await settlesWithin(stopped, waitMs + Math.random() * waitMs)) break;
    result = await runChannelHandler(rt, context, input, options);
  }
  return result;
}
