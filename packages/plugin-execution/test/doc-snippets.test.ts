import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

// Every TypeScript snippet of the README and docs/, compiled under `strict` against the built
// packages, so that the documentation cannot drift from the code. A snippet may use what a host has around it (an
// HTTP server, a manifest, a backend): declared once below; nothing else is given to it.
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const AROUND = `import type { Server } from 'node:http';
import type { RequestListener } from 'node:http';
import type { ExecutionRequest, IExecutionBackend, Platform, mountWebSocketChannels } from '@kb-labs/plugin-execution';
declare global {
  /** The host's HTTP server (channels). */
  const server: Server;
  /** A plugin's manifest, parsed (channels). */
  const manifest: Parameters<typeof mountWebSocketChannels>[1];
  /** A backend the host made earlier. */
  const backend: IExecutionBackend;
  /** An execution's id (workspaces). */
  const executionId: string;
  /** The host's services, and one of them. */
  const platform: Platform;
  const kv: { get(key: string): Promise<string | undefined> };
  /** An execution request. */
  const request: ExecutionRequest;
  /** The host's HTTP request handler, and its sessions (channels' authenticate). */
  const app: RequestListener;
  const sessions: { verify(authorization: string | undefined): Promise<{ id: string; name: string } | undefined> };
}
export {};
`;
let dir: string | undefined;

/** The code blocks `fence` matches in each document, with the document they stand in. */
async function snippetsOf(fence: RegExp): Promise<Array<{ where: string; code: string }>> {
  const snippets: Array<{ where: string; code: string }> = [];
  for (const document of DOCUMENTS) {
    const text = await readFile(path.join(repo, document), 'utf8');
    for (const m of text.matchAll(fence)) snippets.push({ where: document, code: m[1]! });
  }
  return snippets;
}

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The README, every page under docs/, and each package's README (what a user reads on the registry). */
const DOCUMENTS = [
  'README.md',
  ...readdirSync(path.join(repo, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => `docs/${file}`),
  ...readdirSync(path.join(repo, 'packages'))
    .filter((folder) => existsSync(path.join(repo, 'packages', folder, 'README.md')))
    .map((folder) => `packages/${folder}/README.md`),
];

it('compiles every TypeScript snippet of the README, docs/ and the package READMEs under strict', async () => {
  expect(DOCUMENTS.length).toBeGreaterThanOrEqual(12);
  const snippets = (await snippetsOf(/```(?:ts|typescript)\n([\s\S]*?)```/g)).map(({ where, code }) => `// ${where}\n${code}`);
  expect(snippets.length).toBeGreaterThanOrEqual(15);
  // Inside this package, so that the snippets resolve its packages as a host's code would.
  dir = await mkdtemp(path.join(here, '.doc-snippets-'));
  await writeFile(path.join(dir, 'around.d.ts'), AROUND);
  for (const [i, snippet] of snippets.entries()) {
    // A snippet that only continues the quick start (no import of its own) gets its import; one
    // that imports from the package itself imports what it uses (a reader copies it whole).
    const imports = /createExecutionBackend\(/.test(snippet) && !/from '@kb-labs\/plugin-execution'/.test(snippet) ? "import { createExecutionBackend } from '@kb-labs/plugin-execution';\n" : '';
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

it('every JavaScript snippet of the README, docs/ and the package READMEs is valid syntax on this Node (no `await using` on Node 20 and 22)', async () => {
  const snippets = await snippetsOf(/```(?:js|javascript)\n([\s\S]*?)```/g);
  expect(snippets.length).toBeGreaterThanOrEqual(2);
  dir ??= await mkdtemp(path.join(here, '.doc-snippets-'));
  for (const [i, { where, code }] of snippets.entries()) {
    const file = path.join(dir, `snippet-${i}.mjs`);
    await writeFile(file, code);
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
    expect(check.status, `${where}:\n${code}\n${check.stderr}`).toBe(0);
  }
});

it('every JavaScript snippet of a package README loads as the file its first line names, in a project npm init -y made ("type": "commonjs")', async () => {
  // What the registry shows, read without the repository around it: a snippet that names no file
  // was saved as host.js, which such a project loads as CommonJS ("Cannot use import statement outside a module").
  const snippets = (await snippetsOf(/```(?:js|javascript)\n([\s\S]*?)```/g)).filter(({ where }) => where.startsWith('packages/'));
  expect(snippets.length).toBeGreaterThanOrEqual(7);
  dir ??= await mkdtemp(path.join(here, '.doc-snippets-'));
  for (const [i, { where, code }] of snippets.entries()) {
    const project = path.join(dir, `commonjs-project-${i}`);
    const file = path.join(project, /^\/\/ (\S+\.[cm]?js)\b/.exec(code)?.[1] ?? 'host.js');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'host', version: '1.0.0', type: 'commonjs' }));
    // A .js file the snippet says is in a folder whose package.json makes it a module.
    if (/^\/\/.*"type": "module"/.test(code)) await writeFile(path.join(path.dirname(file), 'package.json'), '{ "type": "module" }');
    await writeFile(file, code);
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
    expect(check.status, `${where}, saved as ${path.relative(project, file)}:\n${code}\n${check.stderr}`).toBe(0);
  }
});

it("the zod range the READMEs tell users to install is core's own, whose lower bound has the zod types core's declarations use", async () => {
  const catalog = /^\s+zod: (\S+)$/m.exec(await readFile(path.join(repo, 'pnpm-workspace.yaml'), 'utf8'))?.[1];
  expect(catalog).toMatch(/^\^4\.\d+\.\d+$/);
  const minor = catalog!.replace(/^\^/, '').split('.').slice(0, 2).join('.');
  for (const readme of ['README.md', 'packages/plugin-execution/README.md']) {
    const installs = [...(await readFile(path.join(repo, readme), 'utf8')).matchAll(/zod@(\^[\d.]+)/g)].map((m) => m[1]);
    expect(installs.length, readme).toBeGreaterThan(0);
    // Before: "zod@^4.1", whose 4.1.x lacks z.ZodInstanceOf, which core's .d.ts files name (a strict typecheck failed in them).
    for (const range of installs) expect(range, readme).toBe(`^${minor}`);
  }
  const dist = path.join(repo, 'packages/core/dist');
  const declarations = await Promise.all((await readdir(dist)).filter((file) => file.endsWith('.d.ts')).map((file) => readFile(path.join(dist, file), 'utf8')));
  // z.ZodInstanceOf first came in zod 4.6 (should core's types stop naming it, the bound may come down).
  expect(declarations.some((text) => text.includes('ZodInstanceOf'))).toBe(true);
  expect(Number(minor.split('.')[1])).toBeGreaterThanOrEqual(6);
});
