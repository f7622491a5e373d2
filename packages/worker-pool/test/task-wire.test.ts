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
    // So does a handler of the same name in another plugin, and the first is still sent by its number.
    const namesake = packer.pack(task('e4', { pluginId: '@a/c', pluginRoot: '/plugins/c', entryPath: '/plugins/c/run.mjs' }));
    expect(namesake.d).toBeDefined();
    expect(namesake.h).not.toBe(first.h);
    expect(packer.pack(task('e5')).d).toBeUndefined();
  });

  it('sends the fields again when the handler changed (a reload, other permissions) and the thread takes the new ones', () => {
    const packer = new TaskPacker();
    const unpacker = new TaskUnpacker();
    const before = packer.pack(task('e1'));
    unpacker.unpack(cross(before));
    const reloaded = packer.pack(task('e2', { generation: 1, entryPath: '/plugins/b/run2.mjs' }));
    expect(reloaded.d).toMatchObject({ generation: 1 });
    // Under its number: the thread replaces what it had, and keeps no stale copy besides.
    expect(reloaded.h).toBe(before.h);
    expect(unpacker.unpack(cross(reloaded))).toEqual(task('e2', { generation: 1, entryPath: '/plugins/b/run2.mjs' }));
    const regranted = packer.pack(task('e3', { generation: 1, entryPath: '/plugins/b/run2.mjs', permissions: { env: [] } }));
    expect(regranted.d).toBeDefined();
    expect(unpacker.unpack(cross(regranted)).permissions).toEqual({ env: [] });
  });

  it.each<[string, Partial<RunnerTask>]>([
    ['generation', { generation: 1 }],
    ['moduleKey', { moduleKey: 2 }],
    ['pluginRoot', { pluginRoot: '/plugins/c' }],
    ['entryPath', { entryPath: '/plugins/b/run2.mjs' }],
    ['exportName', { exportName: 'other' }],
    ['permissions', { permissions: { env: ['HOME'] } }],
    ['memoryMb', { memoryMb: 64 }],
  ])('sends the fields again when only %s changed: the thread never runs the handler it had', (_field, changes) => {
    const packer = new TaskPacker();
    const unpacker = new TaskUnpacker();
    unpacker.unpack(cross(packer.pack(task('e1'))));
    const changed = packer.pack(task('e2', changes));
    expect(changed.d).toBeDefined();
    expect(unpacker.unpack(cross(changed))).toEqual(task('e2', changes));
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
