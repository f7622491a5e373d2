/**
 * Platform calls an in-process handler fired and never awaited, refused once its execution is over
 * (those waiting their turn when its time limit passed; one made from a timer after its result):
 * as in a thread or a child process, no unhandled rejection in the host's process, which Node would
 * end for it. Run in a child process, whose unhandled rejections it counts.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

it('platform calls refused once the execution is over leave no unhandled rejection in the host', () => {
  const child = spawnSync(process.execPath, [path.join(here, 'fixtures', 'late-calls-host.mjs'), path.join(here, 'fixtures', 'lifetime-plugin')], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 60_000,
  });
  expect(child.status, child.stderr.slice(0, 2000)).toBe(0);
  expect(JSON.parse(child.stdout.trim().split('\n').at(-1)!)).toEqual({ timedOut: 'TIMEOUT', returned: 'returned', unhandled: [] });
});
