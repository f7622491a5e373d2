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

describe("a worker's notices of its connection", () => {
  const status = (type: string, extra: object = {}) => ({ type, server: '127.0.0.1:4222', ...extra }) as never;
  const refusedLogin = status('error', { error: new Error("'Authorization Violation'") });

  it('says each spell once (its drop, a refused login however many retries meet one, its return), and says every spell', async () => {
    const said = await warningsDuring((notices) => {
      for (let spell = 0; spell < 2; spell++) {
        notices.take(status('disconnect'), false);
        for (let retry = 0; retry < 3; retry++) {
          notices.take(refusedLogin, false);
          notices.take(status('disconnect'), false);
        }
        notices.take(status('reconnect'), false);
      }
    });
    const spell = [expect.stringMatching(/^Worker w1 lost its connection to the NATS server \(127\.0\.0\.1:4222\)/), expect.stringMatching(/^Worker w1 is refused by the NATS server as it reconnects \('Authorization Violation'\)/), expect.stringMatching(/^Worker w1 is connected to the NATS server again \(127\.0\.0\.1:4222\)/)];
    expect(said).toEqual([...spell, ...spell]);
  });

  it('says nothing of the drops of a connection the worker closes itself', async () => {
    const said = await warningsDuring((notices) => {
      notices.take(status('disconnect'), true);
      notices.take(status('reconnect'), true);
    });
    expect(said).toEqual([]);
  });

  it("says nothing of the stream while the connection is down, nor of a read begun while it was down, nor of a failure whose words came after it dropped", async () => {
    const whileDown = await warningsDuring((notices) => {
      notices.take(status('disconnect'), false);
      notices.streamFailed(new Error('jetstream not enabled'));
    });
    expect(whileDown).toEqual([expect.stringMatching(/lost its connection/)]);
    // Nor does that unsaid failure keep the same failure from being said once the connection is back.
    const backAndFailing = await warningsDuring((notices) => {
      notices.take(status('disconnect'), false);
      notices.streamFailed(new Error('jetstream not enabled'));
      notices.take(status('reconnect'), false);
      notices.streamFailed(new Error('jetstream not enabled'));
    });
    expect(backAndFailing).toEqual([expect.stringMatching(/lost its connection/), expect.stringMatching(/is connected to the NATS server again/), expect.stringMatching(/^Worker w1 takes no tasks: /)]);
    // nats.js keeps a request made while the link is down, and it times out after the reconnection.
    const begunWhileDown = await warningsDuring((notices) => {
      notices.take(status('disconnect'), false);
      const epoch = notices.linkEpoch;
      notices.take(status('reconnect'), false);
      notices.streamFailed(timeout, epoch);
      notices.streamFailed(timeout, epoch);
    });
    expect(begunWhileDown).toEqual([expect.stringMatching(/lost its connection/), expect.stringMatching(/is connected to the NATS server again/)]);
    const droppedBeforeWords = await warningsDuring((notices) => {
      notices.streamFailed(new Error('jetstream not enabled'));
      notices.take(status('disconnect'), false);
    });
    expect(droppedBeforeWords).toEqual([expect.stringMatching(/lost its connection/)]);
  });

  it('says a failure that goes on after a reconnection, when the link dropped while the failure before it was asked a ping (not said then)', async () => {
    const said = await warningsDuring(async (notices) => {
      notices.streamFailed(timeout);
      notices.streamFailed(timeout);
      // The link drops while the worker asks the server a ping (to tell the link's silence from the stream's).
      notices.take(status('disconnect'), false);
      await new Promise((resolve) => setTimeout(resolve, 20));
      notices.take(status('reconnect'), false);
      // Back to a server without JetStream.
      notices.streamFailed(new Error('jetstream not enabled'));
    });
    expect(said).toEqual([
      expect.stringMatching(/lost its connection/),
      expect.stringMatching(/is connected to the NATS server again/),
      expect.stringMatching(/^Worker w1 takes no tasks: it cannot use the NATS server \(nats:\/\/127\.0\.0\.1:4222\): JetStream is not enabled there/),
    ]);
    // Dropped and back before the ping's answer: the old link's words are not said after "again" either.
    const backBeforeWords = await warningsDuring(async (notices) => {
      notices.streamFailed(timeout);
      notices.streamFailed(timeout);
      notices.take(status('disconnect'), false);
      notices.take(status('reconnect'), false);
      await new Promise((resolve) => setTimeout(resolve, 20));
      notices.streamFailed(new Error('jetstream not enabled'));
    });
    expect(backBeforeWords).toEqual([expect.stringMatching(/lost its connection/), expect.stringMatching(/is connected to the NATS server again/), expect.stringMatching(/JetStream is not enabled there/)]);
  });

  it('says the stream is back once its failure was said, and not for a failure never said; a failure after it is said again', async () => {
    const said = await warningsDuring(async (notices) => {
      notices.streamFailed(timeout);
      notices.streamFailed(timeout);
      await new Promise((resolve) => setTimeout(resolve, 20));
      notices.streamReady();
      notices.streamReady();
      notices.streamFailed(new Error('jetstream not enabled'));
      await new Promise((resolve) => setTimeout(resolve, 20));
      notices.streamReady();
      // Back before its failure's words were ready: neither is said.
      notices.streamFailed(new Error('jetstream not enabled'));
      notices.streamReady();
    });
    const back = "Worker w1 can use the pool's stream again and takes tasks";
    expect(said).toEqual([expect.stringMatching(/^Worker w1 takes no tasks: /), back, expect.stringMatching(/^Worker w1 takes no tasks: /), back]);
  });
});

describe("a worker's notice that it may not answer the hosts' requests", () => {
  it('is said once, with what to give its NATS user, when the server refuses a publish to a reply inbox', async () => {
    const said: string[] = [];
    const listener = (warning: Error & { code?: string }) => {
      if (warning.code === 'KB_PLUGIN_WORKER_NOT_PERMITTED') said.push(warning.message);
    };
    process.on('warning', listener);
    listeners.push(listener);
    const notices = new ConnectionNotices('w1', { servers: 'nats://127.0.0.1:4222' }, () => '127.0.0.1:4222', async () => true);
    // nats.js's PermissionViolationError names the operation and the subject.
    const violation = (subject: string) => ({ type: 'error', error: Object.assign(new Error(`Permissions Violation for Publish to "${subject}"`), { operation: 'publish', subject }) }) as never;
    const refused = violation('_INBOX.abc.1');
    notices.take(refused, false);
    notices.take(refused, false);
    notices.take(violation('kbexec.p.caller.h1'), false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(said).toEqual([expect.stringMatching(/^Worker w1 cannot answer the hosts' requests .*\(Permissions Violation for Publish to "_INBOX\.abc\.1"\); give it allow_responses/)]);
  });
});
