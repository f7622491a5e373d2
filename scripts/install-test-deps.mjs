// System packages the tests need, installed where they are missing and can be: bubblewrap (the
// subprocess backend's sandbox, tested for real). Debian/Ubuntu as root: apt-get. Elsewhere it
// says what to install; on Linux the sandbox tests fail without it rather than skip.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

const needed = [{ command: 'bwrap', debian: 'bubblewrap' }];

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

if (process.platform !== 'linux') {
  console.log(`install-test-deps: ${process.platform}: the bubblewrap sandbox is Linux-only; its tests are skipped here.`);
  process.exit(0);
}
const missing = needed.filter((n) => !onPath(n.command));
if (missing.length === 0) process.exit(0);
const packages = missing.map((m) => m.debian);
const canApt = process.getuid?.() === 0 && onPath('apt-get');
if (!canApt) {
  console.error(`install-test-deps: missing ${packages.join(', ')}; install ${packages.length > 1 ? 'them' : 'it'} (e.g. sudo apt-get install ${packages.join(' ')}).`);
  process.exit(1);
}
console.log(`install-test-deps: apt-get install ${packages.join(' ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
const install = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
if (install.status !== 0) process.exit(install.status ?? 1);
