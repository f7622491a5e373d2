/**
 * The behaviour suite of DESIGN.md's invariants. Written once; every backend's test file calls
 * `describeConformance(...)` with a factory and adds only what is specific to it.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  AbortedError,
  HandlerError,
  PermissionDeniedError,
  TimeoutError,
  WorkspaceManager,
  deserializeError,
  isExecutionError,
  serializeError,
  type BackendOptions,
  type ExecutionEvent,
  type ExecutionResult,
  type IExecutionBackend,
  type LogEntry,
} from '@kb-labs/plugin-execution-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BASIC, CJS, GUARDED, HOSTILE, fixturePlugins } from './fixtures.js';

export { fixturePlugins, BASIC, CJS, GUARDED, HOSTILE } from './fixtures.js';

export interface ConformanceCapabilities {
  /** Stops a `while (true) {}` handler on timeout (worker-pool, subprocess). */
  preemptsSyncCode: boolean;
  /** Survives process.exit / uncaught errors in the runner, reporting WORKER_CRASHED. */
  isolatesCrashes: boolean;
  /** A handler's changes to Object.prototype do not reach the next execution. */
  isolatesGlobals: boolean;
  /**
   * The handler's file system is sandboxed (subprocess: Node's permission model), so it cannot
   * even create a symlink — Node refuses symlink creation to processes without full fs access.
   * @default false
   */
  sandboxesFs?: boolean;
}

export type BackendFactory = (options: BackendOptions & Record<string, unknown>) => IExecutionBackend;

/** A hard upper bound for "returns on time", generous because CI machines are shared and slow. */
const SLACK_MS = 3000;

export function describeConformance(name: string, create: BackendFactory, capabilities: ConformanceCapabilities): void {
  describe(`conformance: ${name}`, () => {
    let root: string;
    const backends: IExecutionBackend[] = [];

    const make = (options: BackendOptions & Record<string, unknown> = {}) => {
      const backend = create({
        plugins: [fixturePlugins.basic, fixturePlugins.hostile, fixturePlugins.guarded, fixturePlugins.cjs],
        workspace: { root },
        platform: testPlatform(),
        ...options,
      });
      backends.push(backend);
      return backend;
    };

    beforeAll(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), `kb-conformance-${name}-`));
    });

    afterEach(async () => {
      await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
      // Invariant 7 + 6: every lease released, on every path.
      expect(await readdir(root)).toEqual([]);
    });

    afterAll(async () => {
      await rm(root, { recursive: true, force: true });
    });

    describe('results', () => {
      it('runs a handler and returns data with meta', async () => {
        const backend = make();
        expect(backend.type).toBe(name);
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { args: ['--verbose'], n: 1 } });
        expectOk(result);
        expect(result.data).toEqual({ args: ['--verbose'], n: 1 });
        expect(result.meta).toMatchObject({ backend: name, pluginId: BASIC, handlerId: 'echo', artifacts: [] });
        expect(result.meta.executionId).toMatch(/^[\w-]+$/);
        for (const key of ['durationMs', 'queueWaitMs', 'runMs', 'timeoutMs', 'startedAt'] as const) {
          expect(result.meta[key]).toBeGreaterThanOrEqual(0);
        }
        expect(result.meta.workerId !== undefined || result.meta.pid !== undefined).toBe(true);
      });

      it('counts the handler\'s own work as run time, not as wait (meta.runMs), with nothing queued', async () => {
        const backend = make();
        await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'cpu', input: { ms: 60 } });
        expectOk(result);
        // Relations only (no speed assertion): the handler spun ~60 ms of its run, none of its wait.
        expect(result.meta.runMs).toBeGreaterThan(result.meta.queueWaitMs);
        expect(result.meta.runMs).toBeGreaterThanOrEqual(60);
        expect(result.meta.durationMs).toBeGreaterThanOrEqual(result.meta.runMs);
      });

      it('accepts undefined input and a host-chosen execution id', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', executionId: 'my-run-1', context: { requestId: 'r-1' } });
        expectOk(result);
        expect(result.meta.executionId).toBe('my-run-1');
        expect(result.data).toMatchObject({ executionId: 'my-run-1', pluginId: BASIC, handlerId: 'context', hasWorkspace: true, signalAborted: false });
      });

      it('hands the context descriptor to the handler unchanged', async () => {
        const backend = make();
        const context = { requestId: 'req-9', tenantId: 't-1', host: { kind: 'cli', argv: ['run', '--x'] }, config: { depth: 2 }, custom: { a: [1, 2] } };
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', input: null, context });
        expectOk(result);
        expect((result.data as { context: unknown }).context).toEqual(context);
      });

      it('resolves named exports and CommonJS modules', async () => {
        const backend = make();
        const named = await backend.execute({ pluginId: BASIC, handlerId: 'echo-named', input: 5 });
        expectOk(named);
        expect(named.data).toEqual({ named: true, input: 5 });
        const cjs = await backend.execute({ pluginId: CJS, handlerId: 'default', input: 'x' });
        expectOk(cjs);
        expect(cjs.data).toEqual({ cjs: true, input: 'x' });
        const cjsNamed = await backend.execute({ pluginId: CJS, handlerId: 'named', input: { text: 'hi' } });
        expectOk(cjsNamed);
        expect(cjsNamed.data).toEqual({ shouted: 'HI' });
      });

      it('copies values across the boundary: Dates, Maps, nested data survive; identity does not', async () => {
        const backend = make();
        const input = { when: new Date(0), map: new Map([['k', 1]]), deep: { list: [1, { x: 'y' }] } };
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input });
        expectOk(result);
        expect(result.data).toEqual(input);
        expect(result.data).not.toBe(input);
      });

      it('runs many executions concurrently with distinct ids', async () => {
        const backend = make();
        const results = await Promise.all(Array.from({ length: 24 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i })));
        results.forEach((r, i) => {
          expectOk(r);
          expect(r.data).toBe(i);
        });
        expect(new Set(results.map((r) => r.meta.executionId)).size).toBe(24);
      });
    });

    describe('validation and resolution', () => {
      it('validates handler input with its schema and names the path', async () => {
        const backend = make();
        const good = await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: { name: 'kb', count: 2 } });
        expectOk(good);
        expect(good.data).toEqual({ greeting: 'hello kbhello kb' });
        const bad = await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: { name: 3 } });
        expectError(bad, 'VALIDATION_ERROR');
        expect(bad.error.message).toContain('input.name');
      });

      it('never rejects: malformed requests resolve VALIDATION_ERROR naming the field', async () => {
        const backend = make();
        for (const request of [undefined, null, 42, 'x', {}, { pluginId: BASIC }, { pluginId: 1, handlerId: 'echo' }]) {
          const result = await backend.execute(request as never);
          expectError(result, 'VALIDATION_ERROR');
        }
        const missing = await backend.execute({ pluginId: BASIC } as never);
        expectError(missing, 'VALIDATION_ERROR');
        expect(missing.error.message).toContain('handlerId');
        const hostile = new Proxy(
          {},
          {
            get() {
              throw new Error('getter trap');
            },
            ownKeys() {
              throw new Error('ownKeys trap');
            },
          },
        );
        const fromProxy = await backend.execute(hostile as never);
        expect(fromProxy.ok).toBe(false);
        expect(isExecutionError((fromProxy as { error: unknown }).error)).toBe(true);
        const fromProxyOptions = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, hostile as never);
        expect(fromProxyOptions.ok).toBe(false);
        const badId = await backend.execute({ pluginId: BASIC, handlerId: 'echo', executionId: '../../etc' });
        expectError(badId, 'VALIDATION_ERROR');
        expect(badId.error.message).toContain('executionId');
      });

      it('rejects bad execute() options with VALIDATION_ERROR', async () => {
        const backend = make();
        for (const options of [{ timeoutMs: -1 }, { timeoutMs: Number.NaN }, { signal: {} }, { onLog: 'x' }]) {
          const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, options as never);
          expectError(result, 'VALIDATION_ERROR');
        }
      });

      it('reports unknown plugins and handlers with what exists', async () => {
        const backend = make();
        const plugin = await backend.execute({ pluginId: '@nobody/nothing', handlerId: 'run' });
        expectError(plugin, 'HANDLER_NOT_FOUND');
        expect(plugin.error.message).toContain('@nobody/nothing');
        expect(plugin.error.message).toContain(BASIC);
        const handler = await backend.execute({ pluginId: BASIC, handlerId: 'nope' });
        expectError(handler, 'HANDLER_NOT_FOUND');
        expect(handler.error.message).toContain('echo');
        for (const sneaky of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
          expectError(await backend.execute({ pluginId: BASIC, handlerId: sneaky }), 'HANDLER_NOT_FOUND');
        }
      });

      it('reports a missing module or export as HANDLER_NOT_FOUND, a module that throws on load as HANDLER_ERROR', async () => {
        const backend = make();
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'missing-module' }), 'HANDLER_NOT_FOUND');
        const missingExport = await backend.execute({ pluginId: BASIC, handlerId: 'missing-export' });
        expectError(missingExport, 'HANDLER_NOT_FOUND');
        expect(missingExport.error.message).toContain('nope');
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'not-a-handler' }), 'HANDLER_NOT_FOUND');
        const atLoad = await backend.execute({ pluginId: BASIC, handlerId: 'throws-at-load' });
        expectError(atLoad, 'HANDLER_ERROR');
        expect(atLoad.error.message).toContain('broken at import time');
        // The backend keeps serving.
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
      });

      it('reports a bad plugin folder as VALIDATION_ERROR on every execution and in health()', async () => {
        const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-bad-plugin-'));
        try {
          await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/bad', version: '1', handlers: { run: { entry: 42 } } }));
          const backend = make({ plugins: [dir] });
          const result = await backend.execute({ pluginId: '@x/bad', handlerId: 'run' });
          expectError(result, 'VALIDATION_ERROR');
          expect(result.error.message).toContain('handlers.run.entry');
          const health = await backend.health();
          expect(health.ok).toBe(false);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });

      it('rejects a result that cannot cross a boundary with VALIDATION_ERROR', async () => {
        const backend = make();
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'returns-unserializable' }), 'VALIDATION_ERROR');
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'returns-unserializable', input: { kind: 'symbol' } }), 'VALIDATION_ERROR');
      });

      it('rejects an input that cannot cross a boundary with VALIDATION_ERROR', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { fn: () => 1 } });
        expectError(result, 'VALIDATION_ERROR');
      });
    });

    describe('errors', () => {
      it('returns a thrown Error subclass as HANDLER_ERROR with name, message, stack, own props and cause chain', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'throws' });
        expectError(result, 'HANDLER_ERROR');
        const error = result.error;
        expect(error).toBeInstanceOf(HandlerError);
        expect(isExecutionError(error)).toBe(true);
        expect(error.message).toBe('quota exceeded');
        expect(error.stack).toContain('throws.mjs');
        expect(error.details).toMatchObject({ name: 'QuotaError' });
        const thrown = error.cause as Error & { quota: number; used: number; tags: string[] };
        expect(thrown).toBeInstanceOf(Error);
        expect(thrown.name).toBe('QuotaError');
        expect(thrown.quota).toBe(10);
        expect(thrown.tags).toEqual(['a', 'b']);
        const middle = thrown.cause as Error;
        expect(middle.message).toBe('write failed');
        const rootCause = middle.cause as Error & { errno: number };
        expect(rootCause).toBeInstanceOf(TypeError);
        expect(rootCause.message).toBe('disk is read-only');
        expect(rootCause.errno).toBe(-30);
        // …and it survives the wire again, as the host would send it on.
        const again = deserializeError(JSON.parse(JSON.stringify(serializeError(error))));
        expect(again).toBeInstanceOf(HandlerError);
        expect(((again.cause as Error).cause as Error).cause).toBeInstanceOf(TypeError);
      });

      it.each([
        ['string', 'plain string'],
        ['number', '42'],
        ['undefined', 'undefined'],
        ['null', 'null'],
        ['object', '{}'],
        ['circular', 'Circular'],
      ])('turns a thrown %s into HANDLER_ERROR describing it', async (kind, fragment) => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'throws-non-error', input: { kind } });
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message).toContain(fragment);
      });
    });

    describe('time limits and cancellation', () => {
      it('returns TIMEOUT on time for an async handler that never settles, and keeps serving', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 150 });
        expectError(result, 'TIMEOUT');
        expect(result.error).toBeInstanceOf(TimeoutError);
        expect(result.meta.durationMs).toBeLessThan(150 + SLACK_MS);
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
      });

      it('counts the manifest timeout when the request sets none', async () => {
        const backend = make({ defaultTimeoutMs: 120 });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } });
        expectError(result, 'TIMEOUT');
        expect(result.meta.timeoutMs).toBe(120);
      });

      it('fires ctx.signal with the AbortedError when the caller aborts', async () => {
        const backend = make();
        const controller = new AbortController();
        const pending = backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: controller.signal });
        await waitFor(async () => (await backend.stats()).active === 1);
        await new Promise((resolve) => setTimeout(resolve, 100));
        controller.abort();
        const result = await pending;
        expectError(result, 'ABORTED');
        expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
      });

      it.runIf(!capabilities.preemptsSyncCode)('fires ctx.signal with the TimeoutError on timeout (backends that cannot stop the handler)', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { timeoutMs: 100 });
        expectError(result, 'TIMEOUT');
        expect(result.meta.artifacts).toEqual(['signal-TIMEOUT.txt']);
      });

      it('ABORTED for a signal aborted before the call, and the handler never runs', async () => {
        const backend = make();
        const events: ExecutionEvent[] = [];
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { signal: AbortSignal.abort(), onEvent: (e) => events.push(e) });
        expectError(result, 'ABORTED');
        expect(result.error).toBeInstanceOf(AbortedError);
        expect(events).toEqual([]);
      });

      it('ABORTED for a running execution whose signal fires, and keeps serving', async () => {
        const backend = make();
        const controller = new AbortController();
        const pending = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal, timeoutMs: 20_000 });
        setTimeout(() => controller.abort(), 100);
        const result = await pending;
        expectError(result, 'ABORTED');
        expect(result.meta.durationMs).toBeLessThan(100 + SLACK_MS);
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
      });

      it('runs executions in the order admitted, even when the first one\'s workspace is ready last', async () => {
        // Workspace directories are made concurrently; the first takes longer here.
        class SlowFirst extends WorkspaceManager {
          #calls = 0;
          override async acquire(executionId: string) {
            if (this.#calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 100));
            return super.acquire(executionId);
          }
        }
        const backend = make({ maxConcurrency: 1, workspace: new SlowFirst({ root }) });
        const order: string[] = [];
        const run = (name: string) =>
          backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 50 } }).then((r) => {
            expectOk(r);
            order.push(name);
          });
        await Promise.all([run('first'), run('second'), run('third')]);
        expect(order).toEqual(['first', 'second', 'third']);
      });

      it('removes an aborted queued execution without running it', async () => {
        const backend = make({ maxConcurrency: 1 });
        const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 400 } });
        const controller = new AbortController();
        const events: ExecutionEvent[] = [];
        const queued = backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { signal: controller.signal, onEvent: (e) => events.push(e) });
        await waitFor(async () => (await backend.stats()).queued === 1);
        controller.abort();
        const result = await queued;
        expectError(result, 'ABORTED');
        expect(result.error.details).toMatchObject({ phase: 'queued' });
        expect(events).toEqual([]);
        expectOk(await first);
        expect((await backend.stats()).queued).toBe(0);
      });

      it('QUEUE_FULL at once when the queue bound is reached', async () => {
        const backend = make({ maxConcurrency: 1, maxQueue: 1 });
        const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } });
        const queued = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10 } });
        await waitFor(async () => (await backend.stats()).queued === 1);
        const rejected = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
        expectError(rejected, 'QUEUE_FULL');
        expectOk(await running);
        expectOk(await queued);
      });

      it.runIf(capabilities.preemptsSyncCode)('stops a synchronous busy loop on timeout and keeps serving', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 200 });
        expectError(result, 'TIMEOUT');
        expect(result.meta.durationMs).toBeLessThan(200 + SLACK_MS);
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
      });
    });

    describe('workspace', () => {
      it('gives each execution a private directory, lists its artifacts and removes it', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'hi' } });
        expectOk(result);
        const dir = (result.data as { workspace: string }).workspace;
        expect(path.dirname(dir)).toBe(root);
        expect(result.meta.artifacts).toEqual(['out/report.txt', 'summary.json']);
        expect(result.meta.workspaceDir).toBeUndefined();
        await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
      });

      it('keeps the directory when asked, and reports it in meta', async () => {
        const backend = make();
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'kept' } }, { keepWorkspace: true });
        expectOk(result);
        const dir = result.meta.workspaceDir!;
        expect(await readFile(path.join(dir, 'out', 'report.txt'), 'utf8')).toBe('kept');
        expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('700');
        await rm(dir, { recursive: true, force: true });
      });

      it('removes read-only trees and symlinks without following them out', async () => {
        const outside = await mkdtemp(path.join(os.tmpdir(), 'kb-outside-'));
        const precious = path.join(outside, 'precious.txt');
        await writeFile(precious, 'keep me');
        try {
          const backend = make();
          const result = await backend.execute({ pluginId: BASIC, handlerId: 'read-only-tree', input: { target: outside } });
          if (capabilities.sandboxesFs) {
            // The sandbox refuses the symlink itself; the read-only tree is still cleaned up below.
            expectError(result, 'PERMISSION_DENIED');
            // Node 20/22 refuse the symlink itself; Node 24 refuses reading its target, outside the grant.
            expect(result.error.message).toMatch(new RegExp(`symlink|${path.basename(outside)}`, 'i'));
            const tree = await backend.execute({ pluginId: BASIC, handlerId: 'read-only-tree' });
            expectOk(tree);
            await expect(stat((tree.data as { dir: string }).dir)).rejects.toMatchObject({ code: 'ENOENT' });
          } else {
            expectOk(result);
            await expect(stat((result.data as { dir: string }).dir)).rejects.toMatchObject({ code: 'ENOENT' });
          }
          expect(await readFile(precious, 'utf8')).toBe('keep me');
        } finally {
          await rm(outside, { recursive: true, force: true });
        }
      });

      it('releases the workspace on error and timeout paths', async () => {
        const backend = make();
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }), 'HANDLER_ERROR');
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 100 }), 'TIMEOUT');
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: {} }), 'VALIDATION_ERROR');
        // afterEach checks the root is empty.
      });

      it('runs without a workspace when workspace: false', async () => {
        const backend = make({ workspace: false });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'context' });
        expectOk(result);
        expect((result.data as { hasWorkspace: boolean }).hasWorkspace).toBe(false);
        expect(result.meta.artifacts).toEqual([]);
      });
    });

    describe('logs and events', () => {
      it('streams ctx.logger lines and ctx.emit events to the host', async () => {
        const backend = make();
        const logs: LogEntry[] = [];
        const events: ExecutionEvent[] = [];
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { steps: 3 } }, { onLog: (l) => logs.push(l), onEvent: (e) => events.push(e) });
        expectOk(result);
        expect(events.map((e) => e.event)).toEqual([1, 2, 3].map((step) => ({ type: 'progress', step, of: 3 })));
        expect(events.every((e) => e.executionId === result.meta.executionId)).toBe(true);
        const mine = logs.filter((l) => l.stream === 'logger');
        expect(mine.map((l) => l.level)).toEqual(['debug', 'info', 'info', 'info', 'warn', 'error']);
        expect(mine[0]).toMatchObject({ message: 'starting', fields: { steps: 3 }, executionId: result.meta.executionId });
        expect(mine[5]).toMatchObject({ message: 'not really an error', fields: { code: 7 } });
      });

      it('ignores host callbacks that throw', async () => {
        const backend = make();
        const result = await backend.execute(
          { pluginId: BASIC, handlerId: 'emits' },
          {
            onLog: () => {
              throw new Error('host bug');
            },
            onEvent: () => {
              throw new Error('host bug');
            },
          },
        );
        expectOk(result);
      });
    });

    describe('permissions and platform', () => {
      it('PERMISSION_DENIED before any plugin code runs when a need is not granted', async () => {
        const platform = testPlatform();
        const backend = make({ platform });
        const result = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-kv' });
        expectError(result, 'PERMISSION_DENIED');
        expect(result.error).toBeInstanceOf(PermissionDeniedError);
        expect(result.error.message).toContain('platform.kv.get');
        expect(platform.calls).toEqual([]);
      });

      it('runs when the backend option grants it, or the request context does', async () => {
        const viaOption = make({ permissions: { platform: { kv: true } } });
        const a = await viaOption.execute({ pluginId: GUARDED, handlerId: 'needs-kv', input: { key: 'greeting' } });
        expectOk(a);
        expect(a.data).toEqual({ value: 'hello' });
        const viaContext = make();
        const b = await viaContext.execute({ pluginId: GUARDED, handlerId: 'needs-kv', context: { permissions: { platform: { kv: ['get'] } } } });
        expectOk(b);
      });

      it('names every missing permission', async () => {
        const backend = make({ permissions: { platform: { kv: true, secrets: true } } });
        const result = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-secrets' });
        expectError(result, 'PERMISSION_DENIED');
        expect(result.error.message).toContain('env:KB_TOKEN');
        expect(result.error.message).toContain('network');
        expect(result.error.details).toMatchObject({ missing: ['env:KB_TOKEN', 'network'] });
      });

      it('lets a handler call the platform methods it declared, with values copied both ways', async () => {
        const platform = testPlatform();
        const backend = make({ platform, permissions: { platform: { kv: true } } });
        const set = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'set', args: ['k', { n: 1 }] } });
        expectOk(set);
        const get = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['k'] } });
        expectOk(get);
        expect(get.data).toEqual({ ok: true, value: { n: 1 } });
        const big = 'x'.repeat(1024 * 1024);
        const echo = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'echo', args: [big] } });
        expectOk(echo);
        expect((echo.data as { value: string }).value.length).toBe(big.length);
      });

      it('denies undeclared platform calls inside the handler, naming service and method', async () => {
        const platform = testPlatform();
        const backend = make({ platform, permissions: { platform: { kv: true } } });
        const undeclaredMethod = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'delete', args: ['k'] } });
        expectOk(undeclaredMethod);
        expect(undeclaredMethod.data).toMatchObject({ ok: false, code: 'PERMISSION_DENIED', name: 'PermissionDeniedError' });
        expect((undeclaredMethod.data as { message: string }).message).toContain('platform.kv.delete');
        const undeclaredHandler = await backend.execute({ pluginId: BASIC, handlerId: 'platform-undeclared', input: { method: 'get', args: ['k'] } });
        expectOk(undeclaredHandler);
        expect(undeclaredHandler.data).toMatchObject({ ok: false, code: 'PERMISSION_DENIED' });
        for (const method of ['constructor', '__proto__', 'toString']) {
          const sneaky = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method } });
          expectOk(sneaky);
          expect(sneaky.data).toMatchObject({ ok: false, code: 'PERMISSION_DENIED' });
        }
        expect(platform.calls.filter((c) => c.method !== 'get')).toEqual([]);
      });

      it('reports a denied platform call the handler lets escape as PERMISSION_DENIED', async () => {
        const backend = make({ permissions: { platform: { kv: true } } });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'delete', rethrow: true } });
        expectError(result, 'PERMISSION_DENIED');
      });

      it('carries a host service error back to the handler', async () => {
        const backend = make({ permissions: { platform: { kv: true } } });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail', args: ['boom'] } });
        expectOk(result);
        expect(result.data).toMatchObject({ ok: false, message: 'boom' });
      });
    });

    describe('lifecycle', () => {
      it('counts outcomes and latencies in stats()', async () => {
        const backend = make();
        await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
        await backend.execute({ pluginId: BASIC, handlerId: 'throws' });
        await backend.execute({ pluginId: BASIC, handlerId: 'nope' });
        const stats = await backend.stats();
        expect(stats.backend).toBe(name);
        expect(stats.total).toBe(3);
        expect(stats.byOutcome).toMatchObject({ ok: 1, HANDLER_ERROR: 1, HANDLER_NOT_FOUND: 1 });
        expect(stats.latency.total.count).toBe(3);
        expect(stats.latency.total.p99).toBeGreaterThanOrEqual(stats.latency.total.p50);
        expect(stats.active).toBe(0);
        const health = await backend.health();
        expect(health).toMatchObject({ ok: true, backend: name, state: 'ready' });
      });

      it('after shutdown(), new calls get SHUTTING_DOWN and nothing is left', async () => {
        const backend = make();
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
        await backend.shutdown();
        await backend.shutdown();
        expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
        expect((await backend.health()).ok).toBe(false);
        expect((await backend.stats()).state).toBe('closed');
      });

      it('shutdown() stops running executions after its timeout and fails queued ones', async () => {
        const backend = make({ maxConcurrency: 1 });
        const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 60_000 });
        const queued = backend.execute({ pluginId: BASIC, handlerId: 'echo' });
        await waitFor(async () => (await backend.stats()).queued === 1);
        await backend.shutdown({ timeoutMs: 100 });
        expectError(await running, 'SHUTTING_DOWN');
        expectError(await queued, 'SHUTTING_DOWN');
      });

      it('shutdown() lets running executions finish within its timeout', async () => {
        const backend = make();
        let started = false;
        const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 150 } }, { onEvent: () => (started = true) });
        // Wait for the handler itself: an execution admitted but not yet dispatched when shutdown
        // begins never starts (SHUTTING_DOWN), which is not what this test is about.
        await waitFor(() => started);
        await backend.shutdown({ timeoutMs: 5000 });
        expectOk(await running);
      });

      it('supports await using', async () => {
        let captured: IExecutionBackend | undefined;
        {
          await using backend = make();
          captured = backend;
          expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
        }
        expectError(await captured.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
      });
    });

    describe.runIf(capabilities.isolatesCrashes)('crashes', () => {
      it.each([
        ['exit', { code: 7 }],
        ['exit', { code: 0 }],
        ['throw-in-timer', undefined],
        ['unhandled-rejection', undefined],
      ])('%s %j → WORKER_CRASHED, then the backend keeps serving', async (handlerId, input) => {
        const backend = make();
        const result = await backend.execute({ pluginId: HOSTILE, handlerId, input }, { timeoutMs: 20_000 });
        expectError(result, 'WORKER_CRASHED');
        expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
      });

      it('a crash fails only the execution on the crashed runner', async () => {
        const backend = make();
        const others = Array.from({ length: 4 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 + i } }));
        const crash = await backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 3 } });
        expectError(crash, 'WORKER_CRASHED');
        for (const result of await Promise.all(others)) expectOk(result);
      });
    });

    describe.runIf(capabilities.isolatesGlobals)('global state', () => {
      it('a prototype change by one execution does not reach the next', async () => {
        const backend = make();
        expectOk(await backend.execute({ pluginId: HOSTILE, handlerId: 'pollute-prototype' }));
        const check = await backend.execute({ pluginId: HOSTILE, handlerId: 'check-prototype' });
        expectOk(check);
        expect(check.data).toEqual({ polluted: false });
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });

      it('tampered JSON/Promise/structuredClone do not reach the next execution', async () => {
        const backend = make();
        await backend.execute({ pluginId: HOSTILE, handlerId: 'tamper-globals' });
        const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { still: 'fine' } });
        expectOk(next);
        expect(next.data).toEqual({ still: 'fine' });
      });
    });
  });
}

/** A host platform with a kv service that records calls. */
export function testPlatform() {
  const store = new Map<string, unknown>([['greeting', 'hello']]);
  const calls: Array<{ service: string; method: string; args: unknown[] }> = [];
  const record = (method: string, args: unknown[]) => calls.push({ service: 'kv', method, args });
  return {
    calls,
    kv: {
      async get(key: string) {
        record('get', [key]);
        return store.get(key) ?? null;
      },
      async set(key: string, value: unknown) {
        record('set', [key, value]);
        store.set(key, value);
        return true;
      },
      async delete(key: string) {
        record('delete', [key]);
        return store.delete(key);
      },
      async echo(value: unknown) {
        record('echo', [value]);
        return value;
      },
      async fail(message: string) {
        record('fail', [message]);
        throw new Error(message);
      },
    },
    secrets: {
      async read() {
        return 'top secret';
      },
    },
  };
}

export function expectOk<T>(result: ExecutionResult<T>): asserts result is Extract<ExecutionResult<T>, { ok: true }> {
  if (!result.ok) {
    throw new Error(`expected ok, got ${result.error.code}: ${result.error.message}`, { cause: result.error });
  }
}

export function expectError<T>(result: ExecutionResult<T>, code: string): asserts result is Extract<ExecutionResult<T>, { ok: false }> {
  if (result.ok) throw new Error(`expected ${code}, got ok with ${JSON.stringify(result.data)?.slice(0, 200)}`);
  expect(result.error.code, result.error.message).toBe(code);
  expect(isExecutionError(result.error)).toBe(true);
}

/** Poll until `check` is true (bounded), for states that are reached asynchronously. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
