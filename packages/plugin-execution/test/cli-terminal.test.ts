import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');

/**
 * The CLI at a real terminal: util-linux's `script` gives it a pseudo-terminal as its standard
 * input and output, and passes on what the test writes as typing.
 */
function atTerminal(args: string[]) {
  const command = [process.execPath, cli, ...args].map((word) => `'${word.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { PATH: process.env.PATH ?? '', TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { child, screen: () => screen, exited };
}

describe('kb-plugin-exec at a terminal', () => {
  it('--input @- says it reads the terminal, and what to press to end it, before it waits (it would seem hung)', async () => {
    const run = atTerminal(['run', fixturePlugins.basic, 'echo', '--input', '@-', '--no-workspace']);
    await waitFor(() => run.screen().includes('reading --input from the terminal'), 20_000);
    expect(run.screen()).toContain('reading --input from the terminal: type it, then Ctrl-D on a line of its own');
    run.child.stdin.write('{"args":["typed"]}\n');
    run.child.stdin.write('\x04');
    expect(await run.exited).toBe(0);
    expect(run.screen()).toContain('"typed"');
  }, 40_000);
});
