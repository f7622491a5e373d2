// `pnpm bench`: builds nothing itself (run `pnpm build` first, or use the README command),
// runs every packages/*/bench/*.bench.mjs in sequence, one process each, so figures measured
// side by side in one run. Pass --json for one JSON object per figure per line.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const only = args.filter((a) => !a.startsWith('--'));
const order = ['core', 'in-process', 'worker-pool', 'subprocess', 'queue', 'channels', 'plugin-execution'];
let failed = 0;
for (const pkg of order) {
  const dir = path.join(root, 'packages', pkg, 'bench');
  if (!existsSync(dir)) continue;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.bench.mjs')).sort()) {
    if (only.length && !only.some((o) => file.includes(o) || pkg.includes(o))) continue;
    const result = spawnSync(process.execPath, ['--expose-gc', path.join(dir, file), ...args.filter((a) => a.startsWith('--'))], {
      stdio: 'inherit',
      cwd: root,
    });
    if (result.status !== 0) failed++;
  }
}
process.exit(failed ? 1 : 0);
