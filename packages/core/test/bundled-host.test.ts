import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// esbuild as a host's build would run it: the one the repository builds its packages with (tsup's).
const fromRepo = createRequire(fileURLToPath(new URL('../../../package.json', import.meta.url)));
const esbuild = createRequire(fromRepo.resolve('tsup'))('esbuild') as { build(options: Record<string, unknown>): Promise<unknown> };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-bundled-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a host bundled with core in it', () => {
  it('an ES host bundled into one CommonJS file (a TypeScript host built with --format=cjs) fails at load saying to keep @kb-labs/* external', async () => {
    const entry = path.join(dir, 'host.mjs');
    const core = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    await writeFile(entry, `import { createExecutionBackend } from ${JSON.stringify(core)};\nconsole.log(typeof createExecutionBackend);\n`);
    const bundle = path.join(dir, 'host.cjs');
    await esbuild.build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile: bundle, logLevel: 'silent' });
    const run = spawnSync(process.execPath, [bundle], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.status).toBe(1);
    // Before: "TypeError: Cannot read properties of undefined (reading 'endsWith')", from inside core.
    expect(run.stderr).not.toContain('TypeError');
    expect(run.stderr).toContain("Error: @kb-labs/plugin-execution-core was bundled into a CommonJS file, where import.meta.url is empty and it cannot find its own files: keep '@kb-labs/*' external in the bundler");
  });
});
