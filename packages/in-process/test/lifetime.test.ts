import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runHostScript as run } from './node-host.js';

// Core keeps every execution's time limit on one timer per distinct limit (src/host/deadlines.ts):
// the process must live exactly as long as it would with a timer per execution.
describe('time limits and the process lifetime', () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const backend = `
    import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
    const root = ${JSON.stringify(path.join(here, 'fixtures', 'lifetime-plugin'))};
    const backend = new InProcessBackend({ plugins: [root], workspace: false, defaultTimeoutMs: 60000 });
    const t0 = performance.now();`;

  it('a pending time limit keeps the process alive until it expires, as a timer of its own would', () => {
    const result = run(`${backend}
      backend.execute({ pluginId: '@test/lifetime', handlerId: 'never' }, { timeoutMs: 300 })
        .then((r) => console.log(JSON.stringify({ code: r.ok ? 'ok' : r.error.code, ms: Math.round(performance.now() - t0) })));`);
    expect(result.stderr).toBe('');
    const printed = JSON.parse(result.stdout.trim()) as { code: string; ms: number };
    expect(printed.code).toBe('TIMEOUT');
    expect(printed.ms).toBeGreaterThanOrEqual(299);
  });

  it("an execution that waited for a slot runs in its own caller's async context, not in that of the execution that freed the slot", () => {
    const result = run(`${backend}
      const { AsyncLocalStorage } = await import('node:async_hooks');
      const store = (globalThis.kbTestStore = new AsyncLocalStorage());
      const one = new InProcessBackend({ plugins: [root], workspace: false, maxConcurrency: 1 });
      const calls = [1, 2, 3, 4].map((id) => store.run({ id }, () => one.execute({ pluginId: '@test/lifetime', handlerId: 'store' })));
      console.log(JSON.stringify((await Promise.all(calls)).map((r) => (r.ok ? r.data : r.error.code))));
      await Promise.all([one.shutdown(), backend.shutdown()]);`);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout.trim())).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
  });

  it('once every execution has ended, its limit no longer keeps the process alive', () => {
    const result = run(`${backend}
      const r = await backend.execute({ pluginId: '@test/lifetime', handlerId: 'quick' });
      console.log(r.ok ? 'ok' : r.error.code);`);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('ok');
    // The 60 s limit would have held it for a minute; spawnSync's own timeout is 20 s.
    expect(result.signal).toBeNull();
  });
});
