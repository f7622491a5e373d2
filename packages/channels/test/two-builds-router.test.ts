import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A host may have both builds of this package loaded (an ES host whose dependency require()s it):
// mounts of both on one server must share its one upgrade router, or each answers the other's
// upgrades under their shared base path with 404. Run in a plain Node process from this package,
// loading its built ES and CommonJS entries as a host would.
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-channels-two-builds-'));
  for (const name of ['a', 'b']) {
    await mkdir(path.join(dir, name));
    const manifest = { id: `@x/${name}`, version: '1', handlers: { h: { entry: 'h.mjs' } }, channels: [{ path: `/${name}`, handler: 'h' }] };
    await writeFile(path.join(dir, name, 'kb.plugin.json'), JSON.stringify(manifest));
    await writeFile(path.join(dir, name, 'h.mjs'), 'export default async () => {};\n');
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const SCRIPT = `
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as es from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
const cjs = createRequire(import.meta.url)('@kb-labs/plugin-execution-channels');
const dir = process.argv[2];
const manifest = (name) => JSON.parse(readFileSync(path.join(dir, name, 'kb.plugin.json'), 'utf8'));
const server = http.createServer((request, response) => response.end());
const backend = new InProcessBackend({ plugins: [path.join(dir, 'a'), path.join(dir, 'b')], workspace: false });
es.mountWebSocketChannels(server, manifest('a'), { backend, basePath: '/ws' });
cjs.mountWebSocketChannels(server, manifest('b'), { backend, basePath: '/ws' });
let again;
try { cjs.mountWebSocketChannels(server, manifest('a'), { backend, basePath: '/ws' }); again = 'mounted'; } catch (error) { again = error.code; }
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const upgrade = (target) => new Promise((resolve) => {
  const headers = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
  const request = http.request({ host: '127.0.0.1', port: server.address().port, path: target, headers });
  request.on('upgrade', (response, socket) => { socket.destroy(); resolve(response.statusCode); });
  request.on('response', (response) => { response.resume(); resolve(response.statusCode); });
  request.on('error', (error) => resolve(error.code));
  request.end();
});
const statuses = { a: await upgrade('/ws/a'), b: await upgrade('/ws/b'), none: await upgrade('/ws/c') };
server.closeAllConnections();
await new Promise((resolve) => server.close(resolve));
await backend.shutdown();
console.log(JSON.stringify({ statuses, again }));
`;

describe('channel mounts of both builds on one server', () => {
  it("share the server's router: each mount's channels open, a path mounted twice is refused, the rest get 404", async () => {
    const file = path.join(packageDir, `.two-builds-${process.pid}.mjs`);
    await writeFile(file, SCRIPT);
    try {
      const result = spawnSync(process.execPath, ['--no-warnings', file, dir], { cwd: packageDir, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 });
      expect(result.stderr).toBe('');
      expect(JSON.parse(result.stdout.trim())).toEqual({ statuses: { a: 101, b: 101, none: 404 }, again: 'VALIDATION_ERROR' });
    } finally {
      await rm(file, { force: true });
    }
  });
});
