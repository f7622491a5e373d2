import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionNotices } from '../src/runner/connection-notices.js';

/** The worker's connection warnings said while `run` runs, in order. */
async function warningsDuring(run: (notices: ConnectionNotices) => void | Promise<void>): Promise<string[]> {
  const said: string[] = [];
  const listener = (warning: Error & { code?: string }) => {
    if (warning.code === 'KB_PLUGIN_WORKER_CONNECTION') said.push(warning.message);
  };
  process.on('warning', listener);
  listeners.push(listener);
  // The server answers a ping: a read that timed out is the stream's silence, not the link's.
  const notices = new ConnectionNotices('w1', { servers: 'nats://127.0.0.1:4222' }, () => '127.0.0.1:4222', async () => true);
  await run(notices);
  // Warnings are emitted on the next tick; the failure's words wait for the ping's answer.
  await new Promise((resolve) => setTimeout(resolve, 50));
  return said;
}

const listeners: Array<(warning: Error) => void> = [];
afterEach(() => {
  for (const listener of listeners.splice(0)) process.off('warning', listener);
});

const timeout = Object.assign(new Error('TIMEOUT'), { code: 'TIMEOUT' });

describe("a worker's notices of the pool's stream", () => {
  it('one read that timed out is not said (one made while the link was cut times out after the reconnection): the next that does is', async () => {
    const once = await warningsDuring((notices) => notices.streamFailed(timeout));
    expect(once).toEqual([]);
    const twice = await warningsDuring((notices) => {
      notices.streamFailed(timeout);
      notices.streamFailed(timeout);
    });
    expect(twice).toHaveLength(1);
    expect(twice[0]).toMatch(/^Worker w1 takes no tasks: it is connected to the NATS server \(127\.0\.0\.1:4222\), but the pool's JetStream stream does not answer/);
  });

  it('a read that answers in between starts the count again; a failure of another kind is said at once', async () => {
    const apart = await warningsDuring((notices) => {
      notices.streamFailed(timeout);
      notices.streamReady();
      notices.streamFailed(timeout);
    });
    expect(apart).toEqual([]);
    const refused = await warningsDuring((notices) => notices.streamFailed(new Error('jetstream not enabled')));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^Worker w1 takes no tasks: /);
  });
});

describe("a worker's notices of the pool's stream across a reconnection", () => {
  it('a read begun before the connection dropped or came back says nothing when it fails after (nats.js keeps the request across it)', async () => {
    const said = await warningsDuring(async (notices) => {
      const before = notices.linkEpoch;
      notices.take({ type: 'disconnect', server: '127.0.0.1:4222' } as never, false);
      notices.take({ type: 'reconnect', server: '127.0.0.1:4222' } as never, false);
      notices.streamFailed(timeout, before);
      notices.streamFailed(timeout, before);
    });
    expect(said).toEqual([expect.stringMatching(/lost its connection/), expect.stringMatching(/is connected to the NATS server again/)]);
    // Reads begun on the new link that fail twice are said.
    const fresh = await warningsDuring((notices) => {
      notices.take({ type: 'disconnect', server: '127.0.0.1:4222' } as never, false);
      notices.take({ type: 'reconnect', server: '127.0.0.1:4222' } as never, false);
      notices.streamFailed(timeout, notices.linkEpoch);
      notices.streamFailed(timeout, notices.linkEpoch);
    });
    expect(fresh.filter((line) => /stream does not answer/.test(line))).toHaveLength(1);
  });
});
