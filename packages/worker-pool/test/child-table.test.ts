/**
 * The table of a thread's children still running (child-table.ts), which the host reads to kill
 * them once the thread is gone: a child that exited leaves it, so the table holds what runs now,
 * not the first 64 children the thread ever started.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { POOL, okData, useBackends, waitFor } from './helpers.js';

describe.runIf(process.platform === 'linux')('worker-pool: the children a thread lists for the host', () => {
  const backends = useBackends();

  /** The children `leaves-children` left after what `first` asks of it, once its backend shut down (its thread looping after its answer): those still running, killed then. */
  async function survivorsAfter(first: { exitedFirst: number } | { killedFirst: number }): Promise<number[]> {
    const backend = backends.make({ maxThreads: 1 });
    const left = await backend.execute({ pluginId: POOL, handlerId: 'leaves-children', input: { ...first, n: 3, loopAfter: true } }, { timeoutMs: 20_000 });
    const pids = okData(left) as number[];
    await backend.shutdown();
    // Killed: gone, or a zombie of the host (no thread is left to collect it), once the signal has landed.
    await waitFor(() => running(pids).length === 0, 2000).catch(() => undefined);
    const survivors = running(pids);
    for (const pid of survivors) process.kill(pid, 'SIGKILL');
    return survivors;
  }

  it('children left after a hundred that came and went are still listed: the host kills them when their thread cannot (it loops after its answer)', async () => {
    // Before (exited children kept their slots): the table was full, these three were never listed, and ran on.
    expect(await survivorsAfter({ exitedFirst: 100 })).toEqual([]);
  });

  it("children left after seventy its handler killed with their 'exit' listeners taken off are still listed: the host kills them when their thread cannot", async () => {
    // Before (a child whose 'exit' the runtime no longer heard kept its slot): the table was full, these three were never listed, and ran on.
    expect(await survivorsAfter({ killedFirst: 70 })).toEqual([]);
  });
});

/** Those of `pids` still running: not gone, nor a zombie of the host. */
function running(pids: number[]): number[] {
  return pids.filter((pid) => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] !== 'Z');
}
