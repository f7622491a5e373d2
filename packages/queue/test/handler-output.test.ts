// What a handler writes to stdout and stderr (console.log) reaches the caller's onLog from a
// worker whose local backend captures it (subprocess, worker-pool); on an in-process worker it is
// the worker process's own output, as it is the host's own on the in-process backend.
import { HOSTILE, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { LogEntry } from '@kb-labs/plugin-execution-core';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsServer, newPool, startWorker, type WorkerProcess } from './helpers.js';

const LOCAL_BACKENDS = ['subprocess', 'worker-pool', 'in-process'] as const;
type Local = (typeof LOCAL_BACKENDS)[number];

let server: Awaited<ReturnType<typeof natsServer>>;
const pools = Object.fromEntries(LOCAL_BACKENDS.map((local) => [local, newPool(`output-${local}`)])) as Record<Local, string>;
const workers = {} as Record<Local, WorkerProcess>;

beforeAll(async () => {
  server = await natsServer();
  await Promise.all(LOCAL_BACKENDS.map(async (local) => (workers[local] = await startWorker({ natsUrl: server.url, pool: pools[local], backend: local, concurrency: 1 }))));
}, 60_000);

afterAll(async () => {
  await Promise.all(Object.values(workers).map((w) => w.stop()));
  await server?.stop();
});

/** Runs `stdout-spam` for one line of 1,023 x's on stdout and "done spamming" on stderr. */
async function printOneLine(local: Local): Promise<LogEntry[]> {
  const backend = new QueueBackend({ connection: { servers: server.url }, pool: pools[local], plugins: [fixturePlugins.hostile] });
  const logs: LogEntry[] = [];
  try {
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'stdout-spam', input: { mb: 1 / 1024 } }, { timeoutMs: 20_000, onLog: (l) => logs.push(l) });
    expectOk(result);
    expect(result.data).toEqual({ lines: 1 });
  } finally {
    await backend.shutdown();
  }
  return logs;
}

describe("a handler's stdout and stderr, by the worker's local backend", () => {
  it.each(['subprocess', 'worker-pool'] as const)('%s: stream to the caller as stdout and stderr lines', async (local) => {
    const logs = await printOneLine(local);
    expect(logs.map((l) => [l.stream, l.level, l.message])).toEqual([
      ['stdout', 'info', 'x'.repeat(1023)],
      ['stderr', 'error', 'done spamming'],
    ]);
  });

  it("in-process: are the worker process's own output; the caller gets none of it", async () => {
    const logs = await printOneLine('in-process');
    expect(logs).toEqual([]);
    expect(workers['in-process'].output()).toContain('done spamming');
  });
});
