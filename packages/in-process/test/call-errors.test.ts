/**
 * What an in-process handler is told of a platform call its execution's end refused names that
 * call, as on the other backends (docs/errors.md: ABORTED, `phase` 'rpc' and 'ended' with
 * `service` and `method`).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { InProcessBackend } from '../src/index.js';

const plugin = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lifetime-plugin');
const seen = () => (globalThis as { __kbCallErrors?: unknown[] }).__kbCallErrors ?? [];
const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

let backend: InProcessBackend | undefined;
afterEach(async () => {
  await backend?.shutdown({ timeoutMs: 1000 });
  delete (globalThis as { __kbCallErrors?: unknown[] }).__kbCallErrors;
});

function start(): InProcessBackend {
  return (backend = new InProcessBackend({ plugins: [plugin], workspace: false, platform: { kv: { get: () => new Promise(() => {}) } }, permissions: { platform: { kv: true } } }));
}

it('a call waiting its turn when the execution is stopped is told which call it was', async () => {
  const result = await start().execute({ pluginId: '@test/lifetime', handlerId: 'calls-and-records' }, { timeoutMs: 200 });
  expect(result.ok || result.error.code).toBe('TIMEOUT');
  await settle();
  expect(seen().length).toBeGreaterThan(0);
  for (const error of seen()) {
    expect(error).toEqual({ code: 'ABORTED', message: 'The execution was stopped while platform.kv.get waited for its turn', details: { phase: 'rpc', service: 'kv', method: 'get' } });
  }
});

it('a call made after the execution ended is told which call it was', async () => {
  const result = await start().execute({ pluginId: '@test/lifetime', handlerId: 'calls-and-records', input: { returns: true, n: 1 } });
  expect(result.ok && result.data).toBe('returned');
  await settle();
  expect(seen()).toContainEqual({ code: 'ABORTED', message: 'platform.kv.get was called after the execution ended', details: { phase: 'ended', service: 'kv', method: 'get' } });
});
