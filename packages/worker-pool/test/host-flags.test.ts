import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const host = path.join(import.meta.dirname, 'fixtures', 'host-flags-host.mjs');
const plugin = path.join(import.meta.dirname, 'fixtures', 'plugins', 'pool');

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
  data?: { execArgv: string[]; stackTraceLimit: number; inspector: string };
}

/** Runs host-flags-host.mjs in a Node started with `flags`: what its handler's own Worker said. */
function hostWith(flags: string[]): Outcome {
  const run = spawnSync(process.execPath, [...flags, host, JSON.stringify({ plugin })], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  expect(run.stderr).toBe('');
  return JSON.parse(run.stdout) as Outcome;
}

describe('a host started with flags of the whole process, which its threads inherit', () => {
  it('--no-deprecation (process.noDeprecation read-only): its threads start and run handlers', () => {
    // Before: WORKER_CRASHED, "Cannot assign to read only property 'noDeprecation' of object '#<process>'".
    const outcome = hostWith(['--no-deprecation']);
    expect(outcome).toMatchObject({ ok: true, data: { inspector: 'ERR_INSPECTOR_NOT_AVAILABLE' } });
    expect(outcome.data!.execArgv).toContain('--no-deprecation');
  });

  it("a handler's Worker given no flags inherits the thread's that a Worker may have (as Node's own inheriting does), and the inspector stays closed there", () => {
    // A host's usual flags: --max-old-space-size, --expose-gc, --title and V8's --stack-trace-limit
    // are the process's, which Node refuses in a Worker's execArgv (V8's still apply there, being
    // the process's); --pending-deprecation is one a Worker may be given.
    // Before: HANDLER_ERROR, "Initiated Worker with invalid execArgv flags: --max-old-space-size=512, --expose-gc".
    const outcome = hostWith(['--max-old-space-size=512', '--expose-gc', '--title', 'kb-flags-host', '--stack-trace-limit=23', '--pending-deprecation']);
    expect(outcome).toMatchObject({ ok: true, data: { stackTraceLimit: 23, inspector: 'ERR_INSPECTOR_NOT_AVAILABLE' } });
    expect(outcome.data!.execArgv).toContain('--pending-deprecation');
    for (const refused of ['--max-old-space-size=512', '--expose-gc', '--title', 'kb-flags-host', '--stack-trace-limit=23']) expect(outcome.data!.execArgv).not.toContain(refused);
  });
});
