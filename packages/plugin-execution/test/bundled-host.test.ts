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
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-umbrella-bundled-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a host bundled with the packages in it', () => {
  it('an ES host bundled into one CommonJS file (a TypeScript host built with --format=cjs) fails at load saying to keep @kb-labs/* external', async () => {
    const entry = path.join(dir, 'host-of-core.mjs');
    const core = fileURLToPath(new URL('../../core/dist/index.js', import.meta.url));
    await writeFile(entry, `import { createExecutionBackend } from ${JSON.stringify(core)};\nconsole.log(typeof createExecutionBackend);\n`);
    const bundle = path.join(dir, 'host.cjs');
    await esbuild.build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile: bundle, logLevel: 'silent' });
    const run = spawnSync(process.execPath, [bundle], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.status).toBe(1);
    // Before: "TypeError: Cannot read properties of undefined (reading 'endsWith')", from inside core.
    expect(run.stderr).not.toContain('TypeError');
    expect(run.stderr).toContain("Error: @kb-labs/plugin-execution-core was bundled into a CommonJS file, where import.meta.url is empty and it cannot find its own files: keep '@kb-labs/*' external in the bundler");
  });

  it('an ES host bundled whole (esbuild --format=esm, nothing external): a backend that cannot load there says it was bundled and what to keep external', async () => {
    const entry = path.join(dir, 'host.mjs');
    const umbrella = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    await writeFile(
      entry,
      `import { createExecutionBackend } from ${JSON.stringify(umbrella)};
const backend = createExecutionBackend({ type: 'subprocess', workspace: false });
const result = await backend.execute({ pluginId: '@t/p', handlerId: 'h' });
console.log(JSON.stringify(result.ok ? { ok: true } : { code: result.error.code, reason: result.error.details?.reason, message: result.error.message }));
await backend.shutdown();
`,
    );
    const bundle = path.join(dir, 'host.bundle.mjs');
    await esbuild.build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
    const run = spawnSync(process.execPath, [bundle], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.stderr).toBe('');
    const said = JSON.parse(run.stdout) as { code: string; reason: string; message: string };
    expect(said).toMatchObject({ code: 'BACKEND_NOT_INSTALLED', reason: 'load-failed' });
    // Before: only esbuild's "Dynamic require of "child_process" is not supported", under a code that says "not installed".
    expect(said.message).toMatch(/^The "subprocess" backend \(@kb-labs\/plugin-execution-subprocess\) failed to load: Dynamic require of "\w+" is not supported; it was bundled into the host's own file: keep '@kb-labs\/\*' external in the bundler/);
  });
});
