/**
 * A host's own onLog / onEvent that throws or rejects: the execution goes on (its logs and events
 * after the failure still come), and the first failure of each callback in the process is said
 * in one process warning. A file of its own: the warning is once per process.
 */
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterAll, expect, it } from 'vitest';

const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: false });
afterAll(() => backend.shutdown());

it('a throwing onLog and a rejecting onEvent do not fail the execution, and each is said once in a process warning', async () => {
  const warnings: Array<Error & { code?: string }> = [];
  const listener = (warning: Error) => warnings.push(warning);
  process.on('warning', listener);
  try {
    let logs = 0;
    let events = 0;
    for (let i = 0; i < 2; i++) {
      const result = await backend.execute(
        { pluginId: BASIC, handlerId: 'emits' },
        {
          onLog: () => {
            logs++;
            throw new Error('the log sink is down');
          },
          onEvent: async () => {
            events++;
            throw new TypeError(`the event bus is down${' (retrying)'.repeat(200)}`);
          },
        },
      );
      expectOk(result);
    }
    expect(logs).toBeGreaterThan(2);
    expect(events).toBeGreaterThan(2);
    await new Promise((resolve) => setImmediate(resolve));
    const ours = warnings.filter((w) => w.code === 'KB_PLUGIN_CALLBACK_FAILED').map((w) => w.message);
    expect(ours).toEqual([
      expect.stringContaining('An execute() onLog callback threw or rejected (Error: the log sink is down); the execution went on without it'),
      expect.stringContaining('An execute() onEvent callback threw or rejected (TypeError: the event bus is down (retrying) (retrying)'),
    ]);
    // The 2 000-character message is cut: what the warning quotes is at most 500 characters of it.
    expect(ours[1]).not.toContain(' (retrying)'.repeat(50));
  } finally {
    process.off('warning', listener);
  }
});

it('an async onStart that rejects with a value that cannot be shown (no toString) is said as such, not left to end the process', async () => {
  const warnings: Array<Error & { code?: string }> = [];
  const listener = (warning: Error) => warnings.push(warning);
  process.on('warning', listener);
  try {
    const result = await backend.execute(
      { pluginId: BASIC, handlerId: 'echo', input: 1 },
      {
        onStart: async () => {
          throw Object.create(null);
        },
      },
    );
    expectOk(result);
    await new Promise((resolve) => setImmediate(resolve));
    const ours = warnings.filter((w) => w.code === 'KB_PLUGIN_CALLBACK_FAILED').map((w) => w.message);
    expect(ours).toEqual([expect.stringContaining('An execute() onStart callback threw or rejected (a value that cannot be shown); the execution went on without it')]);
  } finally {
    process.off('warning', listener);
  }
});
