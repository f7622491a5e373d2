import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));
const exactProject = fileURLToPath(new URL('./types-exact/tsconfig.json', import.meta.url));

// tsc takes ~10 s here, and more than the suite's 30 s on a machine busy with other work.
describe('compile-time checks (tsc on test/types)', { timeout: 120_000 }, () => {
  it('a misspelt error code does not compile, checking a code narrows the error and its details, and ctx.platform is typed by the plugin\'s declaration; OutputLines takes what outputLimits.resolve() gives', () => {
    const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', project], { encoding: 'utf8' });
    // Each `@ts-expect-error` that meets no error is itself an error, so this fails both ways.
    expect(run.stdout + run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('under exactOptionalPropertyTypes, a request compiles as execute() takes it: context.permissions given as undefined does not', () => {
    const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', exactProject], { encoding: 'utf8' });
    expect(run.stdout + run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
