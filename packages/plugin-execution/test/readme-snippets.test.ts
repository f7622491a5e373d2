import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

// Every TypeScript snippet of the README, compiled under `strict` against the built packages, so
// that the README cannot drift from the code. A snippet may use what a host has around it (an
// HTTP server, a manifest, a backend): declared once below; nothing else is given to it.
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const AROUND = `import type { Server } from 'node:http';
import type { IExecutionBackend, Platform, mountWebSocketChannels } from '@kb-labs/plugin-execution';
declare global {
  /** The host's HTTP server (channels). */
  const server: Server;
  /** A plugin's manifest, parsed (channels). */
  const manifest: Parameters<typeof mountWebSocketChannels>[1];
  /** A backend the host made earlier. */
  const backend: IExecutionBackend;
  /** An execution's id (workspaces). */
  const executionId: string;
  /** The host's services. */
  const platform: Platform;
}
export {};
`;
let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('compiles every TypeScript snippet of the README under strict', async () => {
  const readme = await readFile(path.join(repo, 'README.md'), 'utf8');
  const snippets = [...readme.matchAll(/```(?:ts|typescript)\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(snippets.length).toBeGreaterThanOrEqual(4);
  // Inside this package, so that the snippets resolve its packages as a host's code would.
  dir = await mkdtemp(path.join(here, '.readme-snippets-'));
  await writeFile(path.join(dir, 'around.d.ts'), AROUND);
  for (const [i, snippet] of snippets.entries()) {
    // A snippet that only continues the quick start (no import of its own) gets its import.
    const imports = /^import /m.test(snippet) ? '' : "import { createExecutionBackend } from '@kb-labs/plugin-execution';\n";
    // Each in a scope of its own: top-level names of one snippet do not clash with another's.
    await writeFile(path.join(dir, `snippet-${i}.ts`), `${imports}${snippet}\nexport {};\n`);
  }
  const tsconfig = {
    extends: path.join(repo, 'tsconfig.base.json'),
    compilerOptions: { noEmit: true, strict: true, rootDir: '.', module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'] },
    include: ['*.ts'],
  };
  await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  expect(run.stdout + run.stderr).toBe('');
  expect(run.status).toBe(0);
});
