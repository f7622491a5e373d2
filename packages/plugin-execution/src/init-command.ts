import { existsSync } from 'node:fs';
import { readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { installCommand, lockFileManager, makeDirectories, MAX_PLUGIN_ID_LENGTH } from '@kb-labs/plugin-execution-core/host-kit';

/**
 * `init <dir>`: a plugin that runs as created on every backend — a manifest, one handler typed
 * with JSDoc (checked by TypeScript in an editor, no build step), and a test (`node --test`) that
 * runs it on each local backend. Refuses a folder that exists and is not empty.
 */
export async function initCommand(dir: string, usage: (message: string) => Error): Promise<number> {
  const root = path.resolve(dir);
  const existing = await readdir(root).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    if (error.code === 'ENOTDIR') throw usage(await notAFolder(root));
    throw error;
  });
  if (existing.length > 0) throw usage(`init: ${root} exists and is not empty; give a new folder`);
  const name = pluginName(root);
  const id = `${SCOPE}${name}`;
  const { pkg, schema, installed } = installedPackage(root);
  const made = missingFolders(root);
  // Not mkdir's recursive form: under /proc it retries for ever.
  await makeDirectories(root, 0o755).catch((error: NodeJS.ErrnoException) => {
    throw usage(`init: cannot make ${root}: ${error.message}; give a folder that can be made`);
  });
  const files: Record<string, string> = {
    'package.json': `${JSON.stringify({ name, version: '0.1.0', private: true, type: 'module', scripts: { test: 'node --test' } }, null, 2)}\n`,
    'kb.plugin.json': `${JSON.stringify(
      {
        $schema: schema,
        id,
        version: '0.1.0',
        description: 'Says hello.',
        handlers: { hello: { entry: './hello.mjs', timeoutMs: 5000 } },
      },
      null,
      2,
    )}\n`,
    'hello.mjs': HANDLER.replace('__PACKAGE__', pkg),
    'hello.test.mjs': TEST.replaceAll('__PLUGIN_ID__', id).replace('__PACKAGE__', pkg).replace('__SKIP_MISSING__\n', pkg === CORE ? SKIP_MISSING : '').replace('__BACKENDS__', backendsFor(root)),
  };
  // Installed above the folder: Node finds it from there, nothing to add. Not installed, or core
  // alone (which has no command): npx is told the package whose command it is, never left to
  // fetch whatever is named kb-plugin-exec.
  const userAgent = userAgentOf(root);
  const install = installed ? '' : `${installCommand(UMBRELLA, userAgent)} && `;
  await writeAll(root, files, made);
  if (root.includes(',')) process.stderr.write(`Note: the subprocess backend cannot run a plugin in ${root}: Node's permission flags cannot name a path with a comma. Its test leaves that backend out; move the folder to run it there.\n`);
  process.stdout.write(
    `Created plugin ${id} in ${root}:\n  ${Object.keys(files).join(', ')}\n` +
      `Run it:   npx ${installed && pkg === UMBRELLA ? '' : `--package ${UMBRELLA} `}kb-plugin-exec run ${folderWord(dir)} hello --input '{"name":"Ada"}'\n` +
      `Test it:  cd ${folderWord(dir)} && ${install}${testCommand(userAgent)}\n`,
  );
  return 0;
}

/**
 * The plugin's files written, or none: one that cannot be written (a full disk, a file size limit)
 * takes those written before it along, and the folders init made, so that what is left is no
 * half plugin (a test without its handler, a file cut short) that a second `init` refuses as a
 * folder not empty. A file someone else made meanwhile (`wx`: EEXIST) is theirs, and stays.
 */
async function writeAll(root: string, files: Record<string, string>, made: readonly string[]): Promise<void> {
  const written: string[] = [];
  for (const [file, text] of Object.entries(files)) {
    try {
      await writeFile(path.join(root, file), text, { flag: 'wx' });
      written.push(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') written.push(file);
      for (const done of written) await unlink(path.join(root, done)).catch(() => undefined);
      for (const dir of made) await rmdir(dir).catch(() => undefined);
      throw new Error(`init: cannot write ${file} in ${root} (${(error as Error).message}): what it wrote there is removed`, { cause: error });
    }
  }
}

/** The folders `makeDirectories(root)` is to make, `root` first: those not there yet. */
function missingFolders(root: string): string[] {
  const missing: string[] = [];
  for (let dir = root; !existsSync(dir) && dir !== path.dirname(dir); dir = path.dirname(dir)) missing.push(dir);
  return missing;
}

const UMBRELLA = '@kb-labs/plugin-execution';
const SCOPE = '@my-org/';

/**
 * The plugin's name, from its folder's: "My Plugin ü" → "my-plugin": what is not a letter or digit
 * at either end goes with the rest. Accents dropped, not their letters: "Über" is "uber", not
 * "ber". Cut to what fits in an id after the scope (a folder name may have up to 255 bytes).
 */
function pluginName(root: string): string {
  const words = path.basename(root).normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[^a-z0-9._-]+/g, '-');
  const name = words.replace(/^[^a-z0-9]+/, '').slice(0, MAX_PLUGIN_ID_LENGTH - SCOPE.length).replace(/[^a-z0-9]+$/, '');
  return name || 'my-plugin';
}
const CORE = '@kb-labs/plugin-execution-core';

/**
 * What the handler's type import names and where the manifest's `$schema` is, relative to the
 * plugin folder: of the package the project installed, as Node finds it from there (the nearest
 * node_modules that has one; the umbrella over core, which a pnpm project that installed the
 * umbrella cannot import). None yet: the umbrella in the plugin's own node_modules, where the
 * install command that init prints puts it.
 */
function installedPackage(root: string): { pkg: string; schema: string; installed: boolean } {
  for (let dir = path.dirname(root); ; dir = path.dirname(dir)) {
    for (const pkg of [UMBRELLA, CORE]) {
      const schema = path.join(dir, 'node_modules', pkg, 'dist', 'kb.plugin.schema.json');
      if (existsSync(schema)) return { pkg, schema: relativeUrl(root, schema), installed: true };
    }
    if (dir === path.dirname(dir)) return { pkg: UMBRELLA, schema: `./node_modules/${UMBRELLA}/dist/kb.plugin.schema.json`, installed: false };
  }
}

/**
 * The package manager of the project the new folder is in, as installCommand takes it (a user
 * agent): the one whose lock file is nearest above the folder; else the one running this command
 * (npm's `npx` runs it in a pnpm project too, so the lock file comes first).
 */
function userAgentOf(root: string): string | undefined {
  const manager = lockFileManager(path.dirname(root));
  return manager ? `${manager}/` : (process.env.npm_config_user_agent ?? 'npm/');
}

/** The project's package manager's way to run the `test` script (bun's own `bun test` is its test runner). */
function testCommand(userAgent: string | undefined): string {
  const manager = /^(pnpm|yarn|bun)\//.exec(userAgent ?? '')?.[1];
  return manager === 'bun' ? 'bun run test' : manager ? `${manager} test` : 'npm test';
}

/** `to` relative to the folder `from`, as a `$schema` reference (forward slashes). */
function relativeUrl(from: string, to: string): string {
  return path.relative(from, to).split(path.sep).join('/');
}

/** Why `root` cannot be the new folder: it is a file, or one of the folders above it is (`notes.txt/plugin`), named. */
async function notAFolder(root: string): Promise<string> {
  for (let part = root; part !== path.dirname(part); part = path.dirname(part)) {
    const found = await stat(part).catch(() => undefined);
    if (found && !found.isDirectory()) {
      return part === root ? `init: ${root} is a file; give a new folder` : `init: ${part} is a file, so ${root} cannot be made; give a new folder`;
    }
  }
  return `init: ${root} is not a folder; give a new folder`;
}

const HANDLER = `// @ts-check
/**
 * Says hello. Typed with JSDoc: an editor with TypeScript checks it, no build step.
 * @param {{ name?: string } | undefined} input
 * @param {import('__PACKAGE__').HandlerContext} ctx
 * @returns {Promise<{ message: string }>}
 */
export default async function hello(input, ctx) {
  ctx.logger.info('saying hello', { name: input?.name ?? null });
  return { message: \`Hello, \${input?.name ?? 'world'}!\` };
}
`;

const TEST = `import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createExecutionBackend } from '__PACKAGE__';

const plugin = path.dirname(fileURLToPath(import.meta.url));

for (const type of /** @type {const} */ ([__BACKENDS__])) {
  test(\`hello on the \${type} backend\`, async (t) => {
    const backend = createExecutionBackend({ type, plugins: [plugin] });
    try {
      const result = await backend.execute({ pluginId: '__PLUGIN_ID__', handlerId: 'hello', input: { name: 'Ada' } });
__SKIP_MISSING__
      assert.ok(result.ok, result.ok ? '' : \`\${result.error.code}: \${result.error.message}\`);
      assert.deepEqual(result.data, { message: 'Hello, Ada!' });
    } finally {
      await backend.shutdown();
    }
  });
}
`;

/** Core alone runs a handler on the backends installed beside it: the test skips the others, saying what adds them. */
const SKIP_MISSING = `      if (!result.ok && result.error.code === 'BACKEND_NOT_INSTALLED') return t.skip(result.error.message);
`;

/** `word` as one shell word, quoted only when it has to be (a folder name with a space …). */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/** The folder as typed, as a shell word that no command takes for an option: `-greeter` as `./-greeter`. */
function folderWord(dir: string): string {
  return shellWord(dir.startsWith('-') ? `./${dir}` : dir);
}

/** The backends the test runs the plugin on: not subprocess from a folder it cannot run (a comma in its path). */
function backendsFor(root: string): string {
  return ["'in-process'", "'worker-pool'", ...(root.includes(',') ? [] : ["'subprocess'"])].join(', ');
}
