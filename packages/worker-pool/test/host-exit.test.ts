/**
 * A host that ends without shutdown() while a handler runs (process.exit(), an uncaught
 * exception): the children that handler started on its thread do not run on after the host.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { poolPlugin, waitFor } from './helpers.js';

const host = path.join(import.meta.dirname, 'fixtures', 'exits-mid-execution-host.mjs');
/** Whether `pid` still runs (not gone, nor a zombie waiting for its parent). */
const running = (pid: number) => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] !== 'Z';

describe.runIf(process.platform === 'linux')('a host that exits while a handler runs', () => {
  it.each([
    ['process.exit()', 'exit', false],
    ['an uncaught exception', 'throw', false],
    ['process.exit()', 'exit', true],
  ])('by %s (%s; its handler in a loop: %s) takes the children the handler started along, detached ones included', async (_how, how, loop) => {
    const ran = spawnSync(process.execPath, [host, JSON.stringify({ plugin: poolPlugin, how, loop })], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 30_000 });
    const said = ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as { pids?: number[] });
    const pids = said.find((line) => line.pids)?.pids ?? [];
    try {
      expect(pids, `the handler's children; stderr: ${ran.stderr}`).toHaveLength(4);
      expect(ran.status, ran.stderr).toBe(how === 'exit' ? 0 : 1);
      await waitFor(() => pids.filter(running).length === 0, 2000).catch(() => undefined);
      expect(pids.filter(running), 'children still running after their host exited').toEqual([]);
    } finally {
      for (const pid of pids.filter(running)) process.kill(pid, 'SIGKILL');
    }
  });
});
