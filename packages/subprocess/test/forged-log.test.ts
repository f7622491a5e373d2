import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import type { LogEntry } from '@kb-labs/plugin-execution-core';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-forged-log-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('a log message a handler writes to its channel (fd 3) itself, past what ctx.logger lets through', () => {
  it('is cut by the host to 64 Ki characters, saying so', async () => {
    await using backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-log' } }, { timeoutMs: 20_000, onLog: (entry) => logs.push(entry) });
    expectOk(result);
    const forged = logs.filter((entry) => entry.message.startsWith('yyy'));
    expect(forged).toHaveLength(1);
    // Before the host's cut: all 100,000 characters reached onLog.
    expect(forged[0]!.message).toBe(`${'y'.repeat(64 * 1024)}… [truncated by the host]`);
  });

  it("its fields are cut by the host as ctx.logger cuts them, whatever they list", async () => {
    await using backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-log-fields' } }, { timeoutMs: 20_000, onLog: (entry) => logs.push(entry) });
    expectOk(result);
    const forged = logs.find((entry) => entry.message === 'fields');
    // Before: all 100,000 characters, and one object listed 100^8 times over (JSON.stringify of the line never ended).
    const big = String(forged?.fields?.big);
    expect({ length: big.length, end: big.slice(-20) }).toEqual({ length: 64 * 1024 - 1, end: '… [34485 more chars]' });
    expect(JSON.stringify(forged?.fields).length).toBeLessThan(5 * 1024 * 1024);
  });

  it('fields that are a list reach onLog as ctx.logger sends them: a record, the list as its value', async () => {
    await using backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-log-list' } }, { timeoutMs: 20_000, onLog: (entry) => logs.push(entry) });
    expectOk(result);
    // Before: the list itself, where LogEntry.fields is a record.
    expect(logs.find((entry) => entry.message === 'list')?.fields).toEqual({ value: ['a', 'b'] });
  });
});
