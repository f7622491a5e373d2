import type { RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';
import { TaskPacker, TaskUnpacker } from '../src/task-wire.js';

const permissions = { env: ['HOME'] };

function task(executionId: string, changes: Partial<RunnerTask> = {}): RunnerTask {
  return {
    executionId,
    pluginId: '@a/b',
    handlerId: 'run',
    pluginRoot: '/plugins/b',
    entryPath: '/plugins/b/run.mjs',
    exportName: 'default',
    input: { n: executionId },
    context: {},
    workspaceDir: undefined,
    permissions,
    timeoutMs: 1000,
    memoryMb: undefined,
    generation: 0,
    traceparent: undefined,
    channel: undefined,
    ...changes,
  };
}

/** What the thread gets: a structured clone, as postMessage makes. */
const cross = <T>(value: T): T => structuredClone(value);

describe('worker-pool: tasks on the wire', () => {
  it("sends a handler's fields once per thread and rebuilds every task whole", () => {
    const packer = new TaskPacker();
    const unpacker = new TaskUnpacker();
    const first = packer.pack(task('e1'));
    const second = packer.pack(task('e2'));
    expect(first.d).toBeDefined();
    expect(second.d).toBeUndefined();
    expect(second.h).toBe(first.h);
    expect(unpacker.unpack(cross(first))).toEqual(task('e1'));
    expect(unpacker.unpack(cross(second))).toEqual(task('e2'));
    // Another handler gets a number of its own.
    const other = packer.pack(task('e3', { handlerId: 'other' }));
    expect(other.d).toBeDefined();
    expect(other.h).not.toBe(first.h);
    expect(unpacker.unpack(cross(other))).toEqual(task('e3', { handlerId: 'other' }));
  });

  it('sends the fields again when the handler changed (a reload, other permissions) and the thread takes the new ones', () => {
    const packer = new TaskPacker();
    const unpacker = new TaskUnpacker();
    unpacker.unpack(cross(packer.pack(task('e1'))));
    const reloaded = packer.pack(task('e2', { generation: 1, entryPath: '/plugins/b/run2.mjs' }));
    expect(reloaded.d).toMatchObject({ generation: 1 });
    expect(unpacker.unpack(cross(reloaded))).toEqual(task('e2', { generation: 1, entryPath: '/plugins/b/run2.mjs' }));
    const regranted = packer.pack(task('e3', { generation: 1, entryPath: '/plugins/b/run2.mjs', permissions: { env: [] } }));
    expect(regranted.d).toBeDefined();
    expect(unpacker.unpack(cross(regranted)).permissions).toEqual({ env: [] });
  });

  it('a task that could not be posted does not count as sent: the next one carries the fields', () => {
    const packer = new TaskPacker();
    const unpacker = new TaskUnpacker();
    const lost = packer.pack(task('e1'));
    packer.unsent(lost, task('e1'));
    const next = packer.pack(task('e2'));
    expect(next.d).toBeDefined();
    expect(unpacker.unpack(cross(next))).toEqual(task('e2'));
  });
});
