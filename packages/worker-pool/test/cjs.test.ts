import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { describe, expect, it } from 'vitest';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('worker-pool: CommonJS build', () => {
  it('require() of the package finds its worker entry and runs a handler', () => {
    const script = `
      const { WorkerPoolBackend } = require('@kb-labs/plugin-execution-worker-pool');
      const backend = new WorkerPoolBackend({ plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false, maxThreads: 1 });
      backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 'from cjs' })
        .then(async (result) => { await backend.shutdown(); process.stdout.write(JSON.stringify({ ok: result.ok, data: result.data, workerId: result.meta.workerId })); });
    `;
    const child = spawnSync(process.execPath, ['-e', script], { cwd: packageDir, encoding: 'utf8', timeout: 20_000 });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toMatchObject({ ok: true, data: 'from cjs', workerId: expect.any(Number) });
  });
});
