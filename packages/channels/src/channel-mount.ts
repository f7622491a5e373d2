import type { ConnectionRegistry } from './connection-registry.js';
import type { MountedChannel } from './mounted-channel.js';
import type { UnmountOptions } from './options.js';
import type { MountCounters } from './session-runtime.js';

/** The session counters (frames, executions, refusals, closes) plus the mount's own. */
export interface ChannelMountStats extends MountCounters {
  /** Connections alive: connecting, open, closed with executions still draining, or refused (their `context` threw) and not yet answered. */
  connections: number;
  /** Upgrades waiting for the host's `authenticate` (they count towards `maxConnections` too). */
  authenticating: number;
  /** Of `connections`, those closed, or closed by the server and not yet answered (a client has closeTimeoutMs to), whose received messages or disconnect handler still run; and sockets closed because `context` threw, until their client answers the close (none counted against `maxConnections`, all against twice it). */
  closingConnections: number;
  upgradesAccepted: number;
  /** Refused upgrades by HTTP status. */
  upgradesRejected: Record<string, number>;
}

/**
 * What `mountWebSocketChannels` returns. The mount owns its connections. It unmounts itself when
 * its backend shuts down (through the backend's `onShutdown()`, before the backend stops taking
 * work, so that disconnect handlers still run); `unmount()` closes it earlier.
 */
export interface ChannelMount extends AsyncDisposable {
  readonly registry: ConnectionRegistry;
  readonly channels: readonly MountedChannel[];
  /** True once unmount() started. */
  readonly unmounted: boolean;
  stats(): ChannelMountStats;
  /**
   * Close every connection with 1001, remove the 'upgrade' listener and every timer, let running
   * executions and disconnect handlers finish (bounded by `timeoutMs`, then aborted). Idempotent.
   * A `timeoutMs` that is not a whole number of ms from 0 to 2147483647, or an unknown option,
   * rejects with VALIDATION_ERROR and unmounts nothing.
   */
  unmount(options?: UnmountOptions): Promise<void>;
}
