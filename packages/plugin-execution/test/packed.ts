import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

// What the tests of the published packages share: the packages, packed as `pnpm publish` packs
// them, and real processes run in temp projects outside the workspace.
const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..', '..');
export const fromRepo = createRequire(path.join(repo, 'package.json'));
// The repository's own pnpm (a root devDependency), by its package's `bin`: its exports map gives only package.json.
const pnpmManifest = fromRepo.resolve('pnpm');
export const pnpm = path.join(path.dirname(pnpmManifest), (JSON.parse(readFileSync(pnpmManifest, 'utf8')) as { bin: { pnpm: string } }).bin.pnpm);

export interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  license?: string;
  devDependencies?: Record<string, string>;
}

/** Every package of packages/ that is published: its folder and manifest. */
export const PUBLISHED = readdirSync(path.join(repo, 'packages'))
  .map((folder) => ({ dir: path.join(repo, 'packages', folder), manifest: JSON.parse(readFileSync(path.join(repo, 'packages', folder, 'package.json'), 'utf8')) as Manifest }))
  .filter(({ manifest }) => !manifest.private);

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment for what runs in a temp project, with nothing of the workspace in it: pnpm's
 * bin shims set NODE_PATH to the workspace's packages (a backend that is not installed would load
 * from there) and put its node_modules/.bin on PATH; the npm_* variables are the ones the script
 * runner (pnpm run, under turbo) set for this package's own script.
 */
export const projectEnv: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^p?npm_/.test(name) && name !== 'NODE_PATH')),
  PATH: (process.env.PATH ?? '').split(path.delimiter).filter((dir) => dir && !dir.startsWith(repo + path.sep)).join(path.delimiter),
};

/** A real process, to its end; its status and output. */
export function run(command: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: projectEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject).on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** `run`, failing with the command's output unless it exits 0. */
export async function runOk(command: string, args: string[], cwd: string): Promise<Run> {
  const result = await run(command, args, cwd);
  expect(result.status, `${command} ${args.join(' ')} in ${cwd}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result;
}

/**
 * Every published package packed into `dest` with pnpm, not npm: it writes what `pnpm publish`
 * would (workspace: and catalog: specifiers replaced, the root .pnpmfile.cjs's beforePacking
 * applied). Package name → its tarball. One pnpm for the eight (`pnpm -r publish` packs so too):
 * each pnpm started costs over a second of CPU before it packs anything.
 */
export async function packPublished(dest: string): Promise<Map<string, string>> {
  const filters = PUBLISHED.map(({ manifest }) => `--filter=${manifest.name}`);
  await runOk(process.execPath, [pnpm, '--recursive', ...filters, 'pack', '--pack-destination', dest], repo);
  const tarballs = new Map(PUBLISHED.map(({ manifest }) => [manifest.name, path.join(dest, `${manifest.name.slice(1).replace('/', '-')}-${manifest.version}.tgz`)]));
  expect((await readdir(dest)).sort()).toEqual([...tarballs.values()].map((file) => path.basename(file)).sort());
  return tarballs;
}

/** The README's fenced block of `lang` whose first line starts with `first`. */
export async function readmeBlock(lang: string, first: string): Promise<string> {
  const readme = await readFile(path.join(repo, 'README.md'), 'utf8');
  const block = [...readme.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1]!).find((code) => code.startsWith(first));
  expect(block, `README.md has a \`\`\`${lang} block starting ${first}`).toBeDefined();
  return block!;
}
