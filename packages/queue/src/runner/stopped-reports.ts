import type { NatsConnection } from '@nats-io/transport-node';
import { settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';
import { serverAnswers } from '../shared/connection.js';

/** How long close() waits for stopped executions to report before it closes the connection. */
const STOP_WAIT_MS = 5000;
/** How long close() lets the connection send what it holds and the server confirm its unsubscriptions (ms on a working link); also the wait for stopped handlers with the link down. */
export const CONNECTION_DRAIN_MS = 1000;

/**
 * Until the executions close() stopped have reported (`reported`), and whether the link to the
 * server works. Up to STOP_WAIT_MS on a working link; with it down, or silent (cut without a
 * reset, which the client notices only after 10–15 s: a large result's parts wait there for
 * answers that cannot come), their reports cannot go: a second for their handlers to stop, not
 * five. A link whose server has not answered a ping within that second is taken for silent.
 */
export async function untilStoppedReported(reported: Promise<void>, nc: NatsConnection, linkDown: boolean): Promise<{ linkWorks: boolean }> {
  const answers = linkDown ? Promise.resolve(false) : serverAnswers(nc, CONNECTION_DRAIN_MS);
  if (await settlesWithin(reported, CONNECTION_DRAIN_MS)) return { linkWorks: !linkDown };
  if (!(await answers)) return { linkWorks: false };
  await settlesWithin(reported, STOP_WAIT_MS - CONNECTION_DRAIN_MS);
  return { linkWorks: true };
}
