import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A host that is pid 1 of its namespace (`node server.js` as a container's only process) collects
// every orphan, and Node collects none it did not spawn: each sandbox init that bubblewrap's outer
// process left behind stayed a zombie for good, one per execution, until the container's process
// limit failed every execution. Run here under `unshare --pid` (root), with a real bwrap.
const root = process.getuid?.() === 0 && process.platform === 'linux';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-pid1-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe.runIf(root)('a host that is pid 1 of its namespace', () => {
  it('is not left a zombie per execution that ends well', async () => {
    const entry = pathToFileURL(createRequire(import.meta.url).resolve('@kb-labs/plugin-execution-subprocess')).href;
    const script = path.join(scratch, 'host.mjs');
    await writeFile(
      script,
      `import { readdirSync, readFileSync } from 'node:fs';
import { SubprocessBackend } from ${JSON.stringify(entry)};
const zombies = () => readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).filter((n) => {
  try { const s = readFileSync('/proc/' + n + '/stat', 'utf8'); return s.slice(s.lastIndexOf(')') + 2)[0] === 'Z'; } catch { return false; }
}).length;
const settle = () => new Promise((r) => setTimeout(r, 300));
const backend = new SubprocessBackend({ plugins: [${JSON.stringify(fixturePlugins.basic)}], sandbox: 'required', workspace: { root: ${JSON.stringify(path.join(scratch, 'ws'))} } });
const results = [];
const run = async () => { const r = await backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 'x' }); results.push(r.ok ? 'ok' : r.error.code + ': ' + r.error.message); };
await run();
await settle();
const before = zombies();
for (let i = 0; i < 5; i++) await run();
await settle();
const after = zombies();
await backend.shutdown();
console.log(JSON.stringify({ pid: process.pid, results, before, after }));
`,
    );
    const ran = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, script], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 120_000 });
    expect(ran.status, ran.stderr).toBe(0);
    const seen = JSON.parse(ran.stdout.trim().split('\n').pop()!) as { pid: number; results: string[]; before: number; after: number };
    expect(seen.pid).toBe(1);
    expect(seen.results).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(seen.after).toBe(seen.before);
    // What is left (bubblewrap's own, when a handler's process exits by itself) is said, with the way out.
    expect(ran.stderr).toMatch(/\[KB_PLUGIN_SANDBOX_PID_1\] Warning: This host is pid 1 of its pid namespace: .*Run the host under an init that collects them \(docker run --init, tini, dumb-init\)/);
  });
});
