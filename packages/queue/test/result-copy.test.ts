/**
 * A large result sent again after a reset took the host's answer to its last part: the host had
 * it already, and ended the execution. The copy's parts are for no execution, and are dropped;
 * each is answered all the same, so that its worker is not held waiting for an answer to its last.
 */
import { expectOk, waitFor } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { host, server, useChaosKit, worker } from './chaos-kit.js';
import { QUEUE_PROBE, newPool } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

useChaosKit();

/** A host's answer to a part: an empty message (while the result crosses, the only empty ones its worker gets: a host's presence query, also empty, comes only as the host starts or reconnects). */
const EMPTY_ANSWER = ' 0\r\n\r\n';

describe('a large result its host already has, sent again after a reset', () => {
  let proxy: TcpProxy;

  beforeAll(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterAll(() => proxy?.close());

  it('does not hold its worker: the copy is answered to its last part, and the worker takes its next task at once (before, it waited 10 s for that answer)', async () => {
    const pool = newPool('resultcopy');
    // One slot: the next task runs only once the first execution's result has been sent.
    await worker(proxy.url, pool, 1);
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    // Four parts of 256 KiB; the reset takes the chunk holding the answer to the fourth, the last:
    // the host has the whole result, and the worker, which did not hear so, sends it again.
    const returnBytes = 900_000;
    const result = await backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'big-result', input: { returnBytes } },
      { timeoutMs: 20_000, onEvent: () => proxy.resetOn(EMPTY_ANSWER, 4, true) },
    );
    expectOk(result);
    expect(result.data).toHaveLength(returnBytes);
    // The host answered the last part as it took the result: the answer may still be on its way.
    await waitFor(() => proxy.resets() === 1, 5000);
    // Within its time the worker reconnects (a second or two) and sends the copy; before, its last
    // part waited out the 10 s a part waits for its answer, the worker's one slot taken meanwhile.
    const next = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'abc' }, { timeoutMs: 7000 });
    expectOk(next);
    expect(next.data).toEqual({ length: 3 });
  }, 40_000);
});
