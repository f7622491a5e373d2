import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Whether a process runs (a zombie, dead but not yet reaped by whoever adopted it, does not). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

// Linux: a process is looked up in /proc. The demo starts its nats-server as a user's run does (npm test installs it).
it.runIf(process.platform === 'linux')('the queue demo killed midway leaves none of its workers behind', async () => {
  // Its own nats-server, as a user runs it.
  const { KB_NATS_URL: _ignored, ...env } = process.env;
  const demo = spawn(process.execPath, [path.join(here, '..', 'queue-demo.mjs')], { stdio: ['ignore', 'pipe', 'ignore'], env });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    demo.stdout.on('data', (chunk) => (output += chunk) && /workers ready: .*\n/.test(output) && resolve());
    demo.once('exit', (code) => reject(new Error(`the demo exited (${code}) before its workers were ready: ${output}`)));
  });
  demo.kill('SIGKILL');
  await once(demo, 'exit');
  // A worker's id is vm-<its pid>-<random>.
  const pids = [...output.matchAll(/vm-(\d+)-/g)].map((match) => Number(match[1]));
  expect(pids).toHaveLength(2);
  const until = Date.now() + 15_000;
  while (pids.some(running) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
  const left = pids.filter(running);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  expect(left).toEqual([]);
}, 30_000);
