import { settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';
import type { NatsConnection } from '@nats-io/transport-node';
import { SILENT_CONNECTION_DROPPED } from '../shared/connection.js';

/**
 * Why the server does not answer a ping within `waitMs`, if it does not (for health()). A flush
 * that fails was not answered either; nor was the host's own watch ping, unanswered (`silentMs`)
 * longer than that.
 */
export async function serverSilence(nc: NatsConnection, server: string, silentMs: () => number, waitMs: number): Promise<string | undefined> {
  const pinged = nc.flush().then(() => true, () => false); // prettier-ignore
  if ((await settlesWithin(pinged, waitMs)) && (await pinged) && silentMs() <= waitMs) return undefined;
  return (
    `the NATS server (${server}) has not answered this host's ping within ${waitMs} ms: the host's link to it may be cut ` +
    `(a connection is dropped and made again ${SILENT_CONNECTION_DROPPED})`
  );
}
