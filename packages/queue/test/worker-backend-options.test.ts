// A worker's local backend checks its options when it is made: the worker makes it before it makes
// its workspace root or connects, and says a refusal as one of its own options, with full paths.
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { startExecutionWorker, type LocalBackendOptions } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let base: string;
/** Where the worker's "server" is: a listener that counts the connections it gets and closes each. */
let listener: net.Server;
let url: string;
let connections = 0;

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-worker-backend-options-'));
  listener = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  url = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
});

afterAll(async () => {
  listener.close();
  await rm(base, { recursive: true, force: true });
});

/** What startExecutionWorker rejects with, given `backend` and the worker options `more`, its workspace root `root`. */
async function refusal(backend: LocalBackendOptions, root: string, more: Record<string, unknown> = {}): Promise<ValidationError> {
  const refused = await startExecutionWorker({ connection: { servers: url }, plugins: [fixturePlugins.basic], workspace: { root }, backend, ...more }).then(
    async (worker) => {
      await worker.close();
      throw new Error(`the worker started with backend ${JSON.stringify(backend)}`);
    },
    (error: unknown) => error,
  );
  expect(refused, JSON.stringify(backend)).toBeInstanceOf(ValidationError);
  // Of the options, as the worker's own refusals are: before it runs anything.
  expect((refused as ValidationError).details, JSON.stringify(backend)).toMatchObject({ phase: 'options' });
  expect((refused as ValidationError).message).toMatch(/^Invalid execution worker options:\n/);
  return refused as ValidationError;
}

describe("a worker's local backend options", () => {
  it('one its backend refuses (misspelt, out of range, two that disagree, a folder no child could be granted) is refused before the worker connects or makes its root, named backend.<option>', async () => {
    const root = path.join(base, 'root-never-made');
    const comma = path.join(base, 'x,y');
    const cases: Array<[LocalBackendOptions, Array<{ path: string; message: string }>]> = [
      [{ type: 'subprocess', prespwn: 2 }, [{ path: 'backend.prespwn', message: 'unknown option; did you mean "prespawn"?' }]],
      [
        { type: 'worker-pool', maxThreads: 0, minThreds: 1 },
        [
          { path: 'backend.maxThreads', message: 'must be an integer from 1 to 1024, got 0' },
          { path: 'backend.minThreds', message: 'unknown option; did you mean "minThreads"?' },
        ],
      ],
      [{ type: 'worker-pool', maxQueue: -1 }, [{ path: 'backend.maxQueue', message: 'must be an integer from 0 to 10000000, got -1' }]],
      [{ type: 'worker-pool', minThreads: 3, maxThreads: 2 }, [{ path: 'backend.minThreads', message: 'must not exceed maxThreads (2), got 3' }]],
      [{ type: 'in-process', perPluginConcurrency: 0 }, [{ path: 'backend.perPluginConcurrency', message: 'must be an integer from 1 to 100000, got 0' }]],
      [
        { type: 'subprocess', allowRead: [comma] },
        [{ path: 'backend.allowRead[0]', message: `${JSON.stringify(comma)} contains ",", which the subprocess backend cannot grant a child (Node's permission flags split a path at a comma): move it to a path without one` }],
      ],
    ];
    for (const [backend, issues] of cases) {
      const refused = await refusal(backend, root, { concurrency: 2 });
      expect(refused.details.issues, JSON.stringify(backend)).toEqual(issues);
    }
    // Before: each was said (as `prespwn`, not `backend.prespwn`) only once the worker had connected to its server and made its root.
    expect(connections).toBe(0);
    expect(existsSync(root)).toBe(false);
  });

  it("one the worker gives its backend from its own options is named as the worker's: concurrency (the backend's maxConcurrency), workspace.root", async () => {
    const tooMany = await refusal({ type: 'worker-pool', maxThreads: 2 }, path.join(base, 'root-never-made'), { concurrency: 4 });
    expect(tooMany.details.issues).toEqual([
      { path: 'concurrency', message: 'must not exceed maxThreads (2): each running execution needs a thread of its own, got 4 (the worker gives it to its worker-pool backend as maxConcurrency)' },
    ]);
    const root = path.join(base, 'ws,comma');
    const ungrantable = await refusal({ type: 'subprocess' }, root);
    expect(ungrantable.details.issues).toEqual([
      { path: 'workspace.root', message: `${JSON.stringify(root)} contains ",", which the subprocess backend cannot grant a child (Node's permission flags split a path at a comma): move it to a path without one` },
    ]);
    expect(connections).toBe(0);
    expect(existsSync(root)).toBe(false);
  });

  // The threads of this process, as Linux lists them.
  it.runIf(process.platform === 'linux')('good ones, with a server that cannot be reached: the thread its backend started (made before the connection) has ended when the start fails', async () => {
    const threads = () => readdirSync('/proc/self/task').length;
    const start = () => startExecutionWorker({ connection: { servers: url }, plugins: [fixturePlugins.basic], workspace: { root: path.join(base, 'root') }, backend: { type: 'worker-pool', minThreads: 2, maxThreads: 2 }, concurrency: 2 }).catch((error: unknown) => error);
    // Once first: what the process starts for good on first use (its I/O threads) is counted before.
    await start();
    const before = threads();
    const failed = await start();
    expect((failed as Error).name).toBe('QueueServerError');
    expect(threads()).toBeLessThanOrEqual(before);
  });
});
