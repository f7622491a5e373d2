import { describe, expect, it } from 'vitest';
import { runHostScript as run } from './node-host.js';

// A host that creates a backend per request and never shuts it down keeps every one's runners
// (core's host/backend-census.ts). The process is told once, as Node tells of too many listeners.
describe('backends created and never shut down', () => {
  it('warn the process once (KB_PLUGIN_MANY_BACKENDS) when 20 of a type are open at once; shut down ones do not count', () => {
    const result = run(`
      import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
      const warnings = [];
      process.on('warning', (w) => { if (w.code === 'KB_PLUGIN_MANY_BACKENDS') warnings.push(w.message); });
      const tick = () => new Promise((resolve) => setImmediate(resolve));
      const open = [];
      const create = (n) => { for (let i = 0; i < n; i++) open.push(new InProcessBackend({ workspace: false })); };
      const seen = [];
      create(19);
      await Promise.all(open.splice(0, 5).map((b) => b.shutdown()));
      create(5);
      await tick();
      seen.push(warnings.length);
      create(1);
      await tick();
      seen.push(warnings.length);
      create(10);
      await tick();
      seen.push(warnings.length);
      await Promise.all(open.map((b) => b.shutdown()));
      console.log(JSON.stringify({ seen, message: warnings[0] }));`);
    expect(result.stderr).toBe('');
    const printed = JSON.parse(result.stdout.trim()) as { seen: number[]; message: string };
    // 19 open after five of 24 were shut down: no warning; the 20th open warns; more do not warn again.
    expect(printed.seen).toEqual([0, 1, 1]);
    expect(printed.message).toMatch(/^20 in-process backends are open at once in this process, none of them shut down\./);
    expect(printed.message).toContain('create one backend and reuse it');
  });
});
