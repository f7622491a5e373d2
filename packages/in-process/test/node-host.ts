import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Run an ES module host script in a plain Node process, from this package (so it imports the
 * built package as a host would): inside vitest, vitest's module runner would load the handlers'
 * modules instead of Node's loader. Returns what it printed, and the signal that ended it if one
 * did (its 20 s limit).
 */
export function runHostScript(script: string): { stdout: string; stderr: string; signal: NodeJS.Signals | null } {
  // A file, not `-e`: Node's eval puts `module`, `require` and `exports` on the global object, where a handler would find them.
  const file = path.join(packageDir, `.host-script-${process.pid}-${randomBytes(4).toString('hex')}.mjs`);
  writeFileSync(file, script);
  try {
    const result = spawnSync(process.execPath, ['--no-warnings', file], {
      cwd: packageDir,
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { stdout: result.stdout, stderr: result.stderr, signal: result.signal };
  } finally {
    rmSync(file, { force: true });
  }
}
