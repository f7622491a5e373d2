/**
 * Large platform answers are copied on the host's own thread here: one per turn of its event
 * loop, so that answers that settle together do not hold its timers (the handler's time limit
 * among them) for as long as all their copies take.
 */
import { BASIC, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterAll, expect, it } from 'vitest';

const payload = 'p'.repeat(2 * 1024 * 1024);

/** A `kv.echo(i)` that answers an object with a large `payload` getter; each answer, as it is first read (its copy), says whether the event loop turned since the last was. */
function turnWatchingPlatform(onRead: () => void = () => undefined) {
  const turnedBefore: boolean[] = [];
  let turned = true;
  const kv = {
    echo: async (i: number) => {
      let read = false;
      return {
        i,
        get payload() {
          if (!read) {
            read = true;
            turnedBefore.push(turned);
            turned = false;
            setImmediate(() => (turned = true));
            onRead();
          }
          return payload;
        },
      };
    },
  };
  return { turnedBefore, platform: { kv } };
}

const backends: InProcessBackend[] = [];
afterAll(() => Promise.all(backends.map((backend) => backend.shutdown())));

function backendWith(platform: Record<string, unknown>): InProcessBackend {
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: false, platform, permissions: { platform: { kv: ['echo'] } } });
  backends.push(backend);
  return backend;
}

it("copies an execution's large platform answers in turns of the event loop of their own, in order", async () => {
  const watch = turnWatchingPlatform();
  const result = await backendWith(watch.platform).execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 4, await: true } }, { timeoutMs: 60_000 });
  expectOk(result);
  expect((result.data as Array<{ i: number; payload: string }>).map((each) => [each.i, each.payload === payload])).toEqual([0, 1, 2, 3].map((i) => [i, true]));
  // Before: [true, false, false, false], the four copied back to back (16 answers of a 500,000-row object held the host's loop for 55 s).
  expect(watch.turnedBefore).toEqual([true, true, true, true]);
});

it('does not copy the answers still waiting for their turn once the execution is stopped', async () => {
  const controller = new AbortController();
  // Aborted as the first answer is copied: the other three wait for the next turn, and are never copied.
  const watch = turnWatchingPlatform(() => controller.abort());
  const result = await backendWith(watch.platform).execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 4, await: true } }, { signal: controller.signal, timeoutMs: 60_000 });
  expectError(result, 'ABORTED');
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Before: 4, every answer copied for a handler already stopped.
  expect(watch.turnedBefore).toHaveLength(1);
});
