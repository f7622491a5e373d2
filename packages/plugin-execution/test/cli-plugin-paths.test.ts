import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
let root: string;

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: root, env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, first: result.stderr.split('\n')[0] };
}

/** A plugin folder `name` with the manifest `manifest` and, when given, a handler module h.mjs. */
async function plugin(name: string, manifest: unknown, source?: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir);
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify(manifest));
  if (source !== undefined) await writeFile(path.join(dir, 'h.mjs'), source);
  return dir;
}

describe('kb-plugin-exec: plugin folders typed on the command line', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-paths-'));
    await mkdir(path.join(root, 'empty'));
    await mkdir(path.join(root, 'dir-manifest', 'kb.plugin.json'), { recursive: true });
    await plugin('good', { id: '@t/good', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, 'export default async () => 1;\n');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('run: a <plugin-dir> that does not exist, has no kb.plugin.json or is the manifest file is a usage error (exit 2) naming it', async () => {
    const missing = run(['run', './nope', 'hello']);
    expect(missing.status).toBe(2);
    expect(missing.first).toBe(`Plugin folder ${path.join(root, 'nope')} does not exist`);
    expect(missing.stderr).toContain('kb-plugin-exec --help lists the options.');
    expect(missing.stdout).toBe('');
    const empty = run(['run', './empty', 'hello']);
    expect(empty.status).toBe(2);
    expect(empty.first).toBe(`No kb.plugin.json in plugin folder ${path.join(root, 'empty')}`);
    // A manifest under a near name: which one, and what to call it.
    await mkdir(path.join(root, 'misnamed'), { recursive: true });
    await writeFile(path.join(root, 'misnamed', 'kb.plugins.json'), '{}');
    expect(run(['run', './misnamed', 'hello']).first).toBe(`No kb.plugin.json in plugin folder ${path.join(root, 'misnamed')} (it has kb.plugins.json: name it kb.plugin.json)`);
    const manifestFile = run(['run', './good/kb.plugin.json', 'hello']);
    expect(manifestFile.status).toBe(2);
    expect(manifestFile.first).toBe(`Plugin folder ${path.join(root, 'good', 'kb.plugin.json')} is a file; give the folder that holds its kb.plugin.json (${path.join(root, 'good')})`);
    const folderManifest = run(['run', './dir-manifest', 'hello']);
    expect(folderManifest.status).toBe(2);
    expect(folderManifest.first).toBe(`${path.join(root, 'dir-manifest', 'kb.plugin.json')} is a folder, not a plugin's manifest`);
  });

  it('run: a kb.plugin.json that is there but invalid stays VALIDATION_ERROR, exit 1', async () => {
    await plugin('invalid', { id: '@t/invalid', version: '1.0.0', handlers: {} });
    const invalid = run(['run', './invalid', 'hello']);
    expect(invalid.status).toBe(1);
    expect(invalid.first).toMatch(/^VALIDATION_ERROR: Invalid plugin manifest/);
    const good = run(['run', './good', 'hello']);
    expect(good.status).toBe(0);
    expect(good.stdout.trim()).toBe('1');
  });

  it('worker: --plugins folders that do not exist or have no kb.plugin.json are a usage error (exit 2) naming each, before it connects', () => {
    // Nothing listens on port 1: a worker that got as far as connecting would exit 1 (QUEUE_SERVER_UNREACHABLE).
    const result = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', './nope', './empty', './good']);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n\n')[0]).toBe(`Plugin folder ${path.join(root, 'nope')} does not exist\nNo kb.plugin.json in plugin folder ${path.join(root, 'empty')}`);
    expect(result.stderr).toContain('kb-plugin-exec worker --help lists the options.');
  });

  it('a handler module whose only export is named says which "export" to set in kb.plugin.json', async () => {
    await plugin('named', { id: '@t/named', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, 'export async function hello() { return 1; }\n');
    const named = run(['run', './named', 'hello']);
    expect(named.status).toBe(1);
    expect(named.first).toBe(
      `HANDLER_NOT_FOUND: Handler "hello" of plugin "@t/named": ${path.join(root, 'named', 'h.mjs')} has no export "default" (exports: hello); set "export": "hello" on handler "hello" in kb.plugin.json`,
    );
  });

  it('a --workspace-root starting with a ~ the shell did not expand (quoted, or after "=") is a usage error, not a folder named "~" made here', async () => {
    const said = (given: string, path: string) => `--workspace-root "${given}" starts with a ~ the shell did not expand (it was quoted, or came after "="): give the path itself${path}, or ./${given} for a folder named so`;
    const quoted = run(['run', './good', 'hello', '--workspace-root', '~/kb-ws']);
    expect(quoted.status).toBe(2);
    expect(quoted.first).toBe(said('~/kb-ws', ' ($HOME/kb-ws)'));
    expect(quoted.stdout).toBe('');
    expect(run(['sweep', '--workspace-root=~']).first).toBe(said('~', ' ($HOME)'));
    const worker = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', './good', '--workspace-root', '~kb/ws']);
    expect(worker.status).toBe(2);
    expect(worker.first).toBe(said('~kb/ws', ''));
    // Before: the run made ./~/kb-ws/… and exited 0.
    expect((await readdir(root)).filter((name) => name.startsWith('~'))).toEqual([]);
    // A folder that is named so, written as a path.
    const meant = run(['run', './good', 'hello', '--workspace-root', './~/kb-ws']);
    expect(meant.status, meant.stderr).toBe(0);
    await rm(path.join(root, '~'), { recursive: true });
  });

  it('a plugin folder or workspace root named with a line break or an escape sequence: validate keeps each plugin on one line, and "workspace kept at" the path on one, written out', async () => {
    const odd = 'line\nbreak\x1b[31m';
    await plugin(odd, { id: '@t/odd', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, 'export default async () => 1;\n');
    await mkdir(path.join(root, `ws-${odd}`));
    // Before: "./line" and "break<ESC>[31m: ok (…)" on two lines, the escape sent to the terminal raw.
    const validated = run(['validate', `./${odd}`, './good']);
    expect(validated.status, validated.stderr).toBe(0);
    expect(validated.stdout).toBe('./line\\nbreak\\x1b[31m: ok (@t/odd@1.0.0, handlers: hello)\n./good: ok (@t/good@1.0.0, handlers: hello)\n');
    // Before: "workspace kept at <root>/ws-line" and "break<ESC>[31m/kbx-…" on the next line.
    const kept = run(['run', `./${odd}`, 'hello', '--keep-workspace', '--workspace-root', `./ws-${odd}`]);
    expect(kept.status, kept.stderr).toBe(0);
    const [workspace] = await readdir(path.join(root, `ws-${odd}`));
    expect(kept.stderr).toBe(`workspace kept at ${path.join(root, 'ws-line\\nbreak\\x1b[31m', workspace!)}\n`);
  });

  it('an in-process handler blocking the loop past its time limit with --keep-workspace under a root named with a line break or an escape sequence: "workspace kept at" the path on one line, written out', async () => {
    const odd = 'blocked\nroot\x1b[31m';
    await plugin('spins', { id: '@t/spins', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, 'export default async () => { for (;;) {} };\n');
    await mkdir(path.join(root, `ws-${odd}`));
    const kept = run(['run', './spins', 'hello', '--timeout', '300', '--keep-workspace', '--workspace-root', `./ws-${odd}`]);
    expect(kept.first).toMatch(/^TIMEOUT: Handler "hello" of plugin "@t\/spins" keeps the event loop blocked past its time limit of 300 ms/);
    const [workspace] = await readdir(path.join(root, `ws-${odd}`));
    // Before: "workspace kept at <root>/ws-blocked" and "root<ESC>[31m/kbx-…" on the next line, from the watching thread.
    expect(kept.stderr.split('\n').slice(1)).toEqual([`workspace kept at ${path.join(root, 'ws-blocked\\nroot\\x1b[31m', workspace!)}`, '']);
  });

  it('run and worker: a <plugin-dir> named with a line break that does not exist is said on one line, written out', () => {
    // Before: "Plugin folder <root>/no" and "such<ESC>[31m does not exist" on the next line (the escape written out, the line break kept).
    expect(run(['run', './no\nsuch\x1b[31m', 'hello']).first).toBe(`Plugin folder ${path.join(root, 'no\\nsuch\\x1b[31m')} does not exist`);
    const worker = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', './no\nsuch', '--plugins', './nor\rthis']);
    expect(worker.status).toBe(2);
    expect(worker.stderr.split('\n').slice(0, 2)).toEqual([`Plugin folder ${path.join(root, 'no\\nsuch')} does not exist`, `Plugin folder ${path.join(root, 'nor\\rthis')} does not exist`]);
  });

  it.runIf(process.platform === 'linux')('run: a relative <plugin-dir> from a working directory whose path is not UTF-8 says why it cannot be found, not only that it does not exist', async () => {
    const dir = Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0x78, 0xff, 0x79]), Buffer.from('/p')]); // "x\xffy/p": made by bytes, as a string cannot name it
    mkdirSync(dir, { recursive: true });
    writeFileSync(Buffer.concat([dir, Buffer.from('/kb.plugin.json')]), JSON.stringify({ id: '@t/cwd', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }));
    const result = spawnSync('sh', ['-c', 'cd "$1/$(printf "x\\377y")" && exec "$2" "$3" run ./p hello', 'sh', root, process.execPath, cli], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(result.status).toBe(2);
    // Before: "Plugin folder <root>/x\ufffdy/p does not exist", of a folder that is there.
    expect(result.stderr.split('\n')[0]).toBe(
      `Plugin folder ${root}/x\ufffdy/p does not exist (the working directory's path is not UTF-8 text (Node reads it as "${root}/x\ufffdy", a "\ufffd" for each byte it cannot read, which names no folder), so no path under it can be named: rename the folder whose name is not UTF-8, or work from another directory)`,
    );
  });

  it("run --backend subprocess: a --workspace-root no child could be granted (a ',') is named by its flag; sweep says a root named with a line break on one line", () => {
    // Before: "VALIDATION_ERROR: workspace.root …", an option a CLI user never set.
    const comma = run(['run', './good', 'hello', '--backend', 'subprocess', '--workspace-root', './ws,comma']);
    expect(comma.status).toBe(1);
    expect(comma.first).toBe(`VALIDATION_ERROR: --workspace-root "${path.join(root, 'ws,comma')}" contains ",", which the subprocess backend cannot grant a child (Node's permission flags split a path at a comma): move it to a path without one`);
    // Before: "WORKSPACE_ERROR: --workspace-root <root>/no" and "such does not exist: …" on the next line.
    const swept = run(['sweep', '--workspace-root', './no\nsuch']);
    expect(swept.status).toBe(1);
    expect(swept.stderr).toBe(`WORKSPACE_ERROR: --workspace-root ${path.join(root, 'no\\nsuch')} does not exist: nothing to sweep\n`);
  });

  it("worker --backend subprocess: a --workspace-root no child could be granted is a usage error naming its flag, said before it connects (its --nats gets no connection) or makes the root", async () => {
    let connections = 0;
    const listener = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    try {
      const nats = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
      // Not spawnSync: the listener takes connections meanwhile.
      const child = spawn(process.execPath, [cli, 'worker', '--nats', nats, '--plugins', './good', '--backend', 'subprocess', '--workspace-root', './worker-ws,comma'], { cwd: root, env: { PATH: process.env.PATH ?? '' } });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [status] = (await once(child, 'close')) as [number | null];
      // Before: QUEUE_SERVER_UNREACHABLE (exit 1) after a connection, the root made; with a server, "VALIDATION_ERROR: workspace.root …", an option a CLI user never set.
      expect(status, stderr).toBe(2);
      expect(stderr.split('\n')[0]).toBe(`--workspace-root: "${path.join(root, 'worker-ws,comma')}" contains ",", which the subprocess backend cannot grant a child (Node's permission flags split a path at a comma): move it to a path without one`);
      expect(connections).toBe(0);
      expect(existsSync(path.join(root, 'worker-ws,comma'))).toBe(false);
    } finally {
      listener.close();
    }
  });
});
