import { ValidationError } from '@kb-labs/plugin-execution-core';
import { backendOptionsSchema, nearest, option, parseOptions } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

function failure(run: () => unknown): ValidationError {
  try {
    run();
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('expected a ValidationError');
}

describe('parseOptions', () => {
  const schema = backendOptionsSchema().extend({ maxThreads: option.int(1, 64).optional(), mode: option.oneOf(['a', 'b']).optional() });

  it('returns valid options as given, and accepts undefined as no options', () => {
    expect(parseOptions(schema, { maxThreads: 4, mode: 'b', defaultTimeoutMs: 100 }, 'x options')).toEqual({ maxThreads: 4, mode: 'b', defaultTimeoutMs: 100 });
    expect(parseOptions(schema, undefined, 'x options')).toEqual({});
  });

  it('names an option whose read throws (a getter, a Proxy) by its path, as a ValidationError', () => {
    const boom = () => {
      throw new Error('boom');
    };
    const nested = z.object({ platform: z.record(z.string(), z.unknown()).optional(), list: z.array(z.object({ a: z.number() })).optional() });
    const getter = failure(() => parseOptions(nested, { platform: { llm: {}, get cache() { return boom(); } } }, 'x options'));
    expect(getter.details).toMatchObject({ phase: 'options', issues: [{ path: 'platform.cache', message: 'could not be read: boom' }] });
    const inArray = failure(() => parseOptions(nested, { list: [{ a: 1 }, { get a() { return boom(); } }] }, 'x options'));
    expect(inArray.details.issues).toEqual([{ path: 'list[1].a', message: 'could not be read: boom' }]);
    const proxy = failure(() => parseOptions(nested, { platform: new Proxy({}, { ownKeys: boom }) }, 'x options'));
    expect(proxy.details.issues).toEqual([{ path: 'platform', message: 'could not be read: boom' }]);
    // What no string can be made of (a null-prototype object), said as what it is (before, a TypeError escaped).
    const unprintable = failure(() => parseOptions(nested, { platform: { get cache() { throw Object.create(null); } } }, 'x options'));
    expect(unprintable.details.issues).toEqual([{ path: 'platform.cache', message: 'could not be read: a non-Error object: {}' }]);
  });

  it('names every bad option with its path and a message a host can act on', () => {
    const error = failure(() => parseOptions(schema, { maxThreads: 0, mode: 'c', maxQueue: -1 }, 'worker options'));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.details).toMatchObject({ phase: 'options' });
    expect(error.details.issues).toEqual(
      expect.arrayContaining([
        { path: 'maxThreads', message: 'must be an integer from 1 to 64, got 0' },
        { path: 'mode', message: "must be one of 'a', 'b', got 'c'" },
        { path: 'maxQueue', message: 'must be an integer from 0 to 10000000, got -1' },
      ]),
    );
    expect(error.message.startsWith('Invalid worker options:\n')).toBe(true);
    // What was given, as the caller wrote it: a string is not taken for the number it spells.
    expect(failure(() => parseOptions(schema, { maxThreads: '2' }, 'x options')).details.issues).toEqual([{ path: 'maxThreads', message: 'must be an integer from 1 to 64, got "2"' }]);
    expect(failure(() => parseOptions(schema, { maxThreads: 1.5 }, 'x options')).details.issues).toEqual([{ path: 'maxThreads', message: 'must be an integer from 1 to 64, got 1.5' }]);
    // Past the safe integers int() and max() both refuse it: said once.
    const unsafe = failure(() => parseOptions(schema, { maxThreads: 2 ** 53 }, 'x options'));
    expect(unsafe.details.issues).toEqual([{ path: 'maxThreads', message: 'must be an integer from 1 to 64, got 9007199254740992' }]);
    expect(unsafe.message.split('must be an integer').length).toBe(2);
  });

  it('names the nearest allowed value of a choice when one is close', () => {
    const choice = backendOptionsSchema().extend({ backend: option.oneOf(['in-process', 'worker-pool', 'subprocess']).optional() });
    expect(failure(() => parseOptions(choice, { backend: 'worker-pol' }, 'x options')).details.issues).toEqual([
      { path: 'backend', message: "must be one of 'in-process', 'worker-pool', 'subprocess', got 'worker-pol'; did you mean 'worker-pool'?" },
    ]);
    expect(failure(() => parseOptions(choice, { backend: 3 }, 'x options')).details.issues).toEqual([
      { path: 'backend', message: "must be one of 'in-process', 'worker-pool', 'subprocess', got number" },
    ]);
  });

  it('names the nearest option inside a nested one too, and says zod\'s problems in the house wording', () => {
    const schema = backendOptionsSchema().extend({
      connection: z
        .strictObject({ servers: z.string().optional(), user: z.string().optional(), tls: z.strictObject({ caFile: z.string().optional() }).optional() })
        .optional(),
    });
    const error = failure(() => parseOptions(schema, { connection: { server: 'nats://x', tls: { caFle: 'ca.pem' }, user: 5 } }, 'x options'));
    expect([...(error.details.issues ?? [])].sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { path: 'connection.server', message: 'unknown option; did you mean "servers"?' },
      { path: 'connection.tls.caFle', message: 'unknown option; did you mean "caFile"?' },
      { path: 'connection.user', message: 'must be a string, got number' },
    ]);
  });

  it('refuses unknown options, with the nearest known name when one is close', () => {
    const error = failure(() => parseOptions(schema, { maxThread: 2, defaultTimeoutMS: 5, somethingElse: true, concurency: 2, threds: 2 }, 'x options'));
    expect(error.details.issues).toEqual([
      { path: 'maxThread', message: 'unknown option; did you mean "maxThreads"?' },
      { path: 'defaultTimeoutMS', message: 'unknown option; did you mean "defaultTimeoutMs"?' },
      { path: 'somethingElse', message: 'unknown option' },
      // A typo of an option's last words (`concurrency` of maxConcurrency, `threads` of maxThreads), not of all of it.
      { path: 'concurency', message: 'unknown option; did you mean "maxConcurrency"?' },
      { path: 'threds', message: 'unknown option; did you mean "maxThreads"?' },
    ]);
  });

  it("points piscina's and workerpool's names for the thread counts at this pool's", () => {
    const pool = schema.extend({ minThreads: option.int(0, 64).optional() });
    const error = failure(() => parseOptions(pool, { maxWorkers: 2, minWorkers: 1 }, 'x options'));
    expect(error.details.issues).toEqual([
      { path: 'maxWorkers', message: 'unknown option; did you mean "maxThreads"?' },
      { path: 'minWorkers', message: 'unknown option; did you mean "minThreads"?' },
    ]);
  });

  it("another backend's option that is another pool's name for one of this backend's says both (subprocess `env` → `baseEnv`)", () => {
    const subprocessLike = backendOptionsSchema().extend({ baseEnv: z.array(z.string()).optional() });
    const error = failure(() => parseOptions(subprocessLike, { env: { A: '1' } }, 'subprocess backend options', true));
    expect(error.details.issues).toEqual([{ path: 'env', message: 'not an option of this backend; it is an option of the worker-pool backend; or did you mean "baseEnv"?' }]);
  });

  it("a backend's options: one that only other backend types take is said as theirs", () => {
    const backendSchema = backendOptionsSchema();
    const error = failure(() => parseOptions(backendSchema, { prespawn: 1, cancelGraceMs: 5, pool: 'p', maxQueu: 1 }, 'in-process backend options', true));
    expect(error.details.issues).toEqual([
      { path: 'prespawn', message: 'not an option of this backend; it is an option of the subprocess backend' },
      { path: 'cancelGraceMs', message: 'not an option of this backend; it is an option of the worker-pool and subprocess backends' },
      { path: 'pool', message: 'not an option of this backend; it is an option of the queue backend' },
      { path: 'maxQueu', message: 'unknown option; did you mean "maxQueue"?' },
    ]);
    // execute()'s options and the request's fields, put beside `type`, are said as theirs.
    const misplaced = failure(() => parseOptions(backendSchema, { onLog: () => {}, timeoutMs: 5, input: {} }, 'in-process backend options', true));
    expect(misplaced.details.issues).toEqual([
      { path: 'onLog', message: 'not an option of the backend; it is an option of execute(), for one execution: backend.execute(request, { onLog })' },
      { path: 'timeoutMs', message: 'not an option of the backend; it is an option of execute(), for one execution: backend.execute(request, { timeoutMs }); or did you mean "defaultTimeoutMs"?' },
      { path: 'input', message: 'not an option of the backend; it is a field of the request: backend.execute({ pluginId, handlerId, input })' },
    ]);
    // A handler's manifest field, looked for among a backend's options.
    expect(failure(() => parseOptions(backendSchema, { memoryMb: 128 }, 'worker-pool backend options', true)).details.issues).toEqual([
      {
        path: 'memoryMb',
        message:
          "not an option of the backend; it is a handler's, in its manifest (handlers.<id>.memoryMb in kb.plugin.json). A backend's default heap cap: resourceLimits.maxOldGenerationSizeMb (worker-pool) or defaultMemoryMb (subprocess)",
      },
    ]);
    // Other options objects (a channel mount's, a worker's) are not a backend's: no such hint there.
    expect(failure(() => parseOptions(schema, { prespawn: 1 }, 'x options')).details.issues).toEqual([{ path: 'prespawn', message: 'unknown option' }]);
  });

  it('takes watch as a boolean or { debounceMs, onReload }, and names what is wrong in it', () => {
    const onReload = () => undefined;
    expect(parseOptions(schema, { watch: true }, 'x options')).toEqual({ watch: true });
    expect(parseOptions(schema, { watch: { debounceMs: 20, onReload } }, 'x options')).toEqual({ watch: { debounceMs: 20, onReload } });
    expect(failure(() => parseOptions(schema, { watch: 'yes' }, 'x options')).details.issues).toEqual([{ path: 'watch', message: 'must be a boolean or { debounceMs?, onReload? }' }]);
    expect(failure(() => parseOptions(schema, { watch: { debounceMs: -1 } }, 'x options')).details.issues).toEqual([{ path: 'watch.debounceMs', message: 'must be an integer from 0 to 60000, got -1' }]);
    // An object given where a boolean or an object goes: what is wrong inside the object, not the choice again.
    expect(failure(() => parseOptions(schema, { watch: { onReload: 1 } }, 'x options')).details.issues).toEqual([{ path: 'watch.onReload', message: 'must be a function' }]);
    expect(failure(() => parseOptions(schema, { watch: { debounceMs: Number.NaN } }, 'x options')).details.issues).toEqual([{ path: 'watch.debounceMs', message: 'must be an integer from 0 to 60000, got NaN' }]);
    // Inside a choice of a boolean and an object, a misspelt key is named with its nearest too.
    expect(failure(() => parseOptions(schema, { watch: { debounce: 20 } }, 'x options')).details.issues).toEqual([{ path: 'watch.debounce', message: 'unknown option; did you mean "debounceMs"?' }]);
  });

  it('names the field inside a plugin source or workspace object that is wrong, not only the choice of forms', () => {
    const issues = (value: unknown) => failure(() => parseOptions(schema, value, 'x options')).details.issues;
    expect(issues({ plugins: [{ root: '/p' }] })).toEqual([{ path: 'plugins[0].manifest', message: 'is required' }]);
    expect(issues({ plugins: [{ root: 5, manifest: {} }] })).toEqual([{ path: 'plugins[0].root', message: 'must be a string, got number' }]);
    expect(issues({ plugins: [''] })).toEqual([{ path: 'plugins[0]', message: 'must not be empty' }]);
    expect(issues({ plugins: [5] })).toEqual([{ path: 'plugins[0]', message: 'must be a plugin folder (a path or file: URL) or { root, manifest }' }]);
    expect(issues({ workspace: { root: '' } })).toEqual([{ path: 'workspace.root', message: 'must not be empty' }]);
    expect(issues({ workspace: true })).toEqual([expect.objectContaining({ path: 'workspace', message: expect.stringMatching(/^must be a WorkspaceManager, \{ root \}/) })]);
  });

  it('says when a PluginRegistry or WorkspaceManager comes from another copy of core (two versions installed), which instanceof refuses', () => {
    // What another copy's class looks like from here: same name, another identity.
    const copies = { PluginRegistry: class PluginRegistry {}, WorkspaceManager: class WorkspaceManager {} };
    const issues = failure(() => parseOptions(schema, { registry: new copies.PluginRegistry(), workspace: new copies.WorkspaceManager() }, 'x options')).details.issues;
    expect(issues).toEqual([
      { path: 'registry', message: expect.stringMatching(/^must be a PluginRegistry; this one comes from another copy of @kb-labs\/plugin-execution-core/) },
      { path: 'workspace', message: expect.stringMatching(/; this one comes from another copy of @kb-labs\/plugin-execution-core/) },
    ]);
    expect(failure(() => parseOptions(schema, { registry: {} }, 'x options')).details.issues).toEqual([{ path: 'registry', message: 'must be a PluginRegistry' }]);
  });

  it('refuses a key workspace: { root } does not take, where it was dropped without a word', () => {
    expect(parseOptions(schema, { workspace: { root: '/tmp/w' } }, 'x options')).toEqual({ workspace: { root: '/tmp/w' } });
    expect(failure(() => parseOptions(schema, { workspace: { root: '/tmp/w', keep: true } }, 'x options')).details.issues).toEqual([{ path: 'workspace.keep', message: 'unknown option' }]);
  });

  it('says what plugins takes when it gets something else', () => {
    const issues = (plugins: unknown) => failure(() => parseOptions(schema, { plugins }, 'x options')).details.issues;
    expect(issues('./plugins/a')).toEqual([{ path: 'plugins', message: 'must be an array of plugin folders (paths or file: URLs) or { root, manifest } objects' }]);
    expect(issues([3])).toEqual([{ path: 'plugins[0]', message: 'must be a plugin folder (a path or file: URL) or { root, manifest }' }]);
    expect(issues(['./a', ''])).toEqual([{ path: 'plugins[1]', message: 'must not be empty' }]);
    expect(issues([{ root: '', manifest: {} }])).toEqual([{ path: 'plugins[0].root', message: 'must not be empty' }]);
    expect(parseOptions(schema, { plugins: ['./a', new URL('file:///b'), { root: '/c', manifest: {} }] }, 'x options').plugins).toHaveLength(3);
  });

  it('says what a platform grant takes when it gets something else', () => {
    const issues = (platform: unknown) => failure(() => parseOptions(schema, { permissions: { platform } }, 'x options')).details.issues;
    expect(issues({ kv: 'get' })).toEqual([{ path: 'permissions.platform.kv', message: 'must be true (every method) or an array of method names' }]);
    expect(parseOptions(schema, { permissions: { platform: { kv: ['get'], log: true } } }, 'x options').permissions).toEqual({ platform: { kv: ['get'], log: true } });
  });

  it('refuses a non-object', () => {
    expect(failure(() => parseOptions(schema, 42, 'x options')).details.issues).toHaveLength(1);
  });
});

describe('nearest', () => {
  it('finds a typo of a known name and nothing for an unrelated one', () => {
    const known = ['prespawn', 'maxThreads', 'defaultTimeoutMs'];
    expect(nearest('prespwn', known)).toBe('prespawn');
    expect(nearest('MAXTHREADS', known)).toBe('maxThreads');
    expect(nearest('colour', known)).toBeUndefined();
    // A known name that holds the one given whole, the shortest of them.
    expect(nearest('concurrency', ['maxConcurrency', 'perPluginConcurrency', 'maxQueue'])).toBe('maxConcurrency');
    expect(nearest('timeout', known)).toBe('defaultTimeoutMs');
    expect(nearest('max', known)).toBeUndefined();
  });
});
