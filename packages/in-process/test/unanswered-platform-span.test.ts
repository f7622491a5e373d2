/**
 * A platform call the host never answers (a service that hangs) is what a timed-out execution
 * waited for: its span must still end, when the execution does, so that the trace shows it
 * (a span never ended is never exported). Real SDK registered.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, expectOk, fixturePlugins, installTestSdk, type TestSdk } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

let sdk: TestSdk | undefined;

afterEach(async () => {
  await sdk?.uninstall();
  sdk = undefined;
});

it("ends the span of a platform call the host never answered when the execution ends, saying so, and once", async () => {
  sdk = installTestSdk();
  let called!: () => void;
  const calling = new Promise<void>((resolve) => (called = resolve));
  let answer!: (value: unknown) => void;
  const platform = { kv: { get: () => (called(), new Promise((resolve) => (answer = resolve))) } };
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: false, platform, permissions: { platform: { kv: true } } });
  try {
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'traced', input: null }, { timeoutMs: 100 });
    await calling;
    expectError(result, 'TIMEOUT');
    const execution = sdk.spans().find((span) => span.name === `execute ${BASIC}/traced`)!;
    const calls = sdk.spans().filter((span) => span.name === 'platform kv.get');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.parentSpanContext?.spanId).toBe(execution.spanContext().spanId);
    expect(calls[0]!.attributes['kb.plugin_execution.outcome']).toBe('unanswered');
    expect(calls[0]!.attributes['error.type']).toBe('unanswered');
    // Answered after all, later: not ended a second time.
    answer('late');
    await new Promise((resolve) => setImmediate(resolve));
    expect(sdk.spans().filter((span) => span.name === 'platform kv.get')).toHaveLength(1);
  } finally {
    await backend.shutdown({ timeoutMs: 0 });
  }
});

it('a call the handler did not await, unanswered when it returned ok: its span ends with the execution, outcome "unanswered", not an error', async () => {
  sdk = installTestSdk();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-unanswered-'));
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@t/fire-and-forget', version: '1.0.0', handlers: { h: { entry: './h.mjs', permissions: { platform: { kv: ['get'] } } } } }));
  await writeFile(path.join(dir, 'h.mjs'), "export default (_input, ctx) => {\n  ctx.platform.kv.get('x').catch(() => {});\n  return 'returned';\n};\n");
  let answer!: (value: unknown) => void;
  const platform = { kv: { get: () => new Promise((resolve) => (answer = resolve)) } };
  const backend = new InProcessBackend({ plugins: [dir], workspace: false, platform, permissions: { platform: { kv: true } } });
  try {
    expectOk(await backend.execute({ pluginId: '@t/fire-and-forget', handlerId: 'h' }));
    const calls = sdk.spans().filter((span) => span.name === 'platform kv.get');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.attributes['kb.plugin_execution.outcome']).toBe('unanswered');
    expect(calls[0]!.attributes['error.type']).toBeUndefined();
    expect(calls[0]!.status.code).toBe(0); // UNSET
    answer('late');
  } finally {
    await backend.shutdown({ timeoutMs: 0 });
    await rm(dir, { recursive: true, force: true });
  }
});
