import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually, rawClient, upgradeStatus } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('authenticate at its edges', () => {
  it('gives a hook its documented 10 s when authenticateTimeoutMs is not given: one that answers after ~1.5 s lets its client in', async () => {
    const h = await setup({ authenticate: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 1500)) });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
  });

  it('an upgrade whose client reset while its hook ran stops counting once the hook answers: a new client is taken again', async () => {
    const answers: Array<() => void> = [];
    let held = true;
    const h = await setup({
      maxConnections: 1,
      authenticateTimeoutMs: 30_000,
      authenticate: () => (held ? new Promise<boolean>((resolve) => answers.push(() => resolve(true))) : true),
    });
    for (let n = 1; n <= 2; n++) {
      const { socket } = rawClient(h.url('/echo'));
      await eventually(() => h.mount.stats().authenticating === 1, `upgrade ${n} in authenticate`);
      socket.resetAndDestroy();
      await eventually(() => h.mount.stats().authenticating === 0, `upgrade ${n}'s client reset`);
    }
    // Twice maxConnections of hooks still run for clients that left.
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(503);
    held = false;
    for (const answer of answers) answer();
    // Their hooks have answered: nothing of those clients is left to hold a place.
    await eventually(async () => (await upgradeStatus(h.url('/echo'))).status === 101, 'a new client taken once the hooks answered', 3000);
  });

  it("unmount ends the wait of an upgrade whose client reset while its hook runs: the hook's timer goes with it", async () => {
    // Ref'd timers counted just around unmount (as for the other 'leaves no timer' checks).
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const h = await setup({ authenticateTimeoutMs: 60_000, authenticate: () => new Promise<never>(() => {}) });
    const { socket } = rawClient(h.url('/echo'));
    await eventually(() => h.mount.stats().authenticating === 1, 'the upgrade in authenticate');
    socket.resetAndDestroy();
    await eventually(() => h.mount.stats().authenticating === 0, 'its client reset');
    const during = timers();
    await h.mount.unmount();
    expect(timers()).toBeLessThan(during);
  });

  it.each([
    ['null', null, 401],
    ['{ allow: false } without a status', { allow: false }, 401],
    ['an array', [true], 500, 'an array (true)'],
    ['a status past 599', { allow: false, status: 600 }, 500, 'status 600, which is no HTTP error status (400-599)'],
    ['a message that is not a string', { allow: false, message: 42 }, 500, 'a message that is not a string (number)'],
  ])("a verdict of %s is answered with its status, or 500 as the host's mistake", async (_what, verdict, status, said?: string) => {
    const errors: string[] = [];
    const h = await setup({ authenticate: (() => verdict) as never, onError: (error) => errors.push((error as Error).message) });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(status);
    // A refusal is the host's answer; a verdict of another shape is its mistake, named to onError.
    expect(errors).toEqual(said === undefined ? [] : [expect.stringContaining(`authenticate() returned ${said}`)]);
  });
});
