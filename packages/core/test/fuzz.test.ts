/**
 * Property-based tests: random and adversarial values never crash the schemas, the workspace id
 * check or the error wire form, never pollute prototypes, and always fail with our own error
 * classes and a usable message. `FUZZ_RUNS=5000 npx vitest run test/fuzz.test.ts` for a longer run.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ERROR_CODES, HandlerError, PluginRegistry, ValidationError, WorkspaceError, WorkspaceManager, deserializeError, isExecutionError, serializeError } from '../src/index.js';
import { parseWith, toHandlerError } from '../src/backend-kit.js';
import { executionRequestSchema } from '../src/host/request.js';
import { unsafeExecutionIdReason } from '../src/host/workspace-manager.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const NUM_RUNS = Number(process.env.FUZZ_RUNS) || 200;
const params = { numRuns: NUM_RUNS };

// ---------------------------------------------------------------------------------------------
// Prototype pollution watch
// ---------------------------------------------------------------------------------------------

const PROTOTYPES = [Object.prototype, Array.prototype, Function.prototype, String.prototype, Error.prototype];
const snapshot = () => PROTOTYPES.map((proto) => Reflect.ownKeys(proto).map(String).sort().join(','));
const before = snapshot();

function expectNoPollution(): void {
  const probe = {} as Record<string, unknown>;
  expect(probe.polluted).toBeUndefined();
  expect(([] as unknown as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype);
  expect(snapshot()).toEqual(before);
}

afterEach(expectNoPollution);

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

const HUGE = `${'h'.repeat(1 << 20)}\0tail`;
const DEPTH = 5000;

/** fast-check prints counterexamples recursively: a 5000-level value would overflow the stack while reporting the real failure. */
function labelled<T extends object>(value: T, label: string): T {
  Object.defineProperty(value, fc.toStringMethod, { value: () => label, enumerable: false });
  return value;
}

function deepObject(depth: number): unknown {
  let value: unknown = { leaf: true };
  for (let i = 0; i < depth; i++) value = { a: value };
  return labelled(value as object, `deepObject(${depth})`);
}
function deepArray(depth: number): unknown {
  let value: unknown = [];
  for (let i = 0; i < depth; i++) value = [value];
  return labelled(value as object, `deepArray(${depth})`);
}
const deepJson = labelled(JSON.parse(`${'{"__proto__":'.repeat(DEPTH)}{"polluted":"yes"}${'}'.repeat(DEPTH)}`) as object, `deepJson(${DEPTH})`);

/** Values made by JSON.parse carry `__proto__` as an own key, which a careless `out[key] = v` turns into a prototype change. */
const poison = [
  '{"__proto__":{"polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '{"prototype":{"polluted":"yes"}}',
  '[{"__proto__":{"polluted":"yes"}}]',
  '{"__proto__":{"__proto__":{"polluted":"yes"}},"toString":"x","hasOwnProperty":1,"valueOf":null}',
].map((text) => JSON.parse(text) as unknown);

const specialStrings = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '__defineGetter__',
  'then',
  '..',
  '.',
  '...',
  '../x.js',
  '..\\x.js',
  'a/../../x.js',
  './a/../..',
  '/etc/passwd',
  'C:\\x.js',
  'C:x.js',
  '\\\\server\\share\\x.js',
  'file:///etc/passwd',
  '%2e%2e/x.js',
  '~/x',
  'a\0b',
  '\0',
  '',
  ' ',
  '\n',
  '\u202e\u0000',
  '\ud800',
  '😀',
  'ａ',
  'x'.repeat(128),
  'x'.repeat(129),
  'x'.repeat(215),
  HUGE,
];

const keyArb = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'run', 'id', 'handlers', 'entry', 'platform', 'fs', 'read', 'polluted'),
  fc.string({ maxLength: 12 }),
);

const pathTrick = fc.oneof(
  fc.constantFrom(...specialStrings),
  fc
    .array(fc.constantFrom('..', '.', 'a', 'b', '', '\\', 'C:', '\0', 'x.js', '__proto__', '~'), { minLength: 1, maxLength: 6 })
    .chain((parts) => fc.constantFrom(parts.join('/'), parts.join('\\'), `/${parts.join('/')}`)),
);

const trickyString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...specialStrings) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: pathTrick },
);

const anything = fc.anything({
  key: keyArb,
  maxDepth: 4,
  maxKeys: 5,
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withObjectString: true,
  withNullPrototype: true,
  withBigInt: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
});

const nasty = fc.oneof(
  { weight: 3, arbitrary: trickyString },
  { weight: 3, arbitrary: anything },
  { weight: 1, arbitrary: fc.constantFrom(...poison, deepObject(DEPTH), deepArray(DEPTH), deepJson) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, null, 0, -0, Number.NaN, Infinity, true, false, [], {}) },
);

/** Mostly a valid value, sometimes a bad one: so that the success path is reached as well as every failure. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, bad: fc.Arbitrary<U>): fc.Arbitrary<T | U> =>
  fc.oneof({ weight: 12, arbitrary: valid as fc.Arbitrary<T | U> }, { weight: 1, arbitrary: bad as fc.Arbitrary<T | U> });

/** Valid handler ids, several of them Object.prototype names. */
const names = fc.constantFrom('run', 'a', 'x.y:z-1', 'cache', 'constructor', 'toString', 'hasOwnProperty', 'valueOf');
/** Valid service and method names (identifiers; `constructor` and `prototype` are reserved). */
const identifiers = fc.constantFrom('cache', 'logger', 'get', 'set', 'toString', 'hasOwnProperty', 'valueOf', 'call', '$x', 'a.b');
const fsPath = mostly(fc.constantFrom('data', 'a/b', './x', 'data/../y', '.', 'data/'), pathTrick);

const permissionsArb = fc.record(
  {
    platform: mostly(
      fc.dictionary(mostly(identifiers, keyArb), mostly(fc.oneof(fc.constant(true), fc.array(mostly(identifiers, keyArb), { maxLength: 3 })), nasty), { maxKeys: 3 }),
      nasty,
    ),
    fs: mostly(fc.record({ read: fc.array(fsPath, { maxLength: 3 }), write: fc.array(fsPath, { maxLength: 3 }) }, { requiredKeys: [] }), nasty),
    env: mostly(fc.array(mostly(fc.constantFrom('HOME', 'PATH', '_X1'), trickyString), { maxLength: 3 }), nasty),
    network: mostly(fc.boolean(), nasty),
    childProcess: mostly(fc.boolean(), nasty),
  },
  { requiredKeys: [] },
);

const handlerSpecArb = fc.record(
  {
    entry: fc.oneof({ weight: 3, arbitrary: pathTrick }, { weight: 6, arbitrary: fc.constantFrom('run.js', './dist/run.js', 'a/b/../c.cjs', 'x//y.mjs') }, { weight: 1, arbitrary: nasty }),
    export: mostly(fc.constantFrom('default', 'run', '__proto__', 'constructor', '$x'), trickyString),
    timeoutMs: mostly(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.oneof(fc.integer(), fc.double(), nasty)),
    memoryMb: mostly(fc.integer({ min: 8, max: 65_536 }), fc.oneof(fc.integer({ min: -10, max: 100_000 }), nasty)),
    permissions: mostly(permissionsArb, nasty),
    description: mostly(fc.string({ maxLength: 20 }), trickyString),
  },
  { requiredKeys: ['entry'] },
);

const manifestArb = fc.record(
  {
    id: mostly(fc.constantFrom('@a/b', 'plugin', 'constructor', '@a/toString', 'a.b-c', '@x/__proto__'), fc.oneof(trickyString, nasty)),
    version: mostly(fc.constant('1.0.0'), nasty),
    permissions: mostly(permissionsArb, nasty),
    handlers: mostly(fc.dictionary(mostly(names, trickyString), mostly(handlerSpecArb, nasty), { minKeys: 1, maxKeys: 3 }), nasty),
    channels: mostly(
      fc.array(
        fc.record({ path: mostly(fc.constantFrom('/chat', '/', '/a/b'), trickyString), handler: mostly(names, trickyString), maxPayload: mostly(fc.integer({ min: 1, max: 1000 }), nasty) }, { requiredKeys: ['path', 'handler'] }),
        { maxLength: 3 },
      ),
      nasty,
    ),
    // No unknown top-level key: the manifest is strict at every level, so one would refuse it
    // every time (and `asJson` injects "__proto__" and "constructor" keys, refused the same way).
  },
  { requiredKeys: ['id', 'version', 'handlers'] },
);

/** Manifests with every field valid (ids and handler names still include Object.prototype's). */
const cleanManifestArb = fc.record({
  id: fc.constantFrom('@a/b', 'plugin', 'a.b-c', '@a/toString'),
  version: fc.constant('1.0.0'),
  handlers: fc.dictionary(names, fc.record({ entry: fc.constantFrom('run.js', './dist/run.js', 'a/b/../c.cjs') }), { minKeys: 1, maxKeys: 3 }),
});

/** The same value as it would arrive in a JSON file or frame: own `__proto__` keys and all. */
function asJson(value: unknown, inject: boolean): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return value;
  }
  if (text === undefined) return value;
  if (inject && text.startsWith('{') && text !== '{}') text = `{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},${text.slice(1)}`;
  return JSON.parse(text) as unknown;
}

const asReceived = <T>(arb: fc.Arbitrary<T>) =>
  fc.oneof(
    { weight: 2, arbitrary: arb.map((v) => v as unknown) },
    { weight: 2, arbitrary: fc.tuple(arb, fc.boolean()).map(([v, inject]) => asJson(v, inject)) },
    { weight: 1, arbitrary: nasty },
  );

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A ValidationError whose message lists at least one problem with its JSON path. */
function expectUsableValidationError(error: unknown): void {
  if (!(error instanceof ValidationError)) throw error;
  expect(error.code).toBe('VALIDATION_ERROR');
  expect(error.message.length).toBeGreaterThan(0);
  expect(error.message).toMatch(/\n {2}- (\(root\)|[^\n]+?): \S/);
  const issues = error.details.issues as Array<{ path: string; message: string }>;
  expect(issues.length).toBeGreaterThan(0);
  for (const issue of issues) {
    expect(typeof issue.path).toBe('string');
    expect(issue.path.length).toBeGreaterThan(0);
    expect(typeof issue.message).toBe('string');
  }
  expect(() => JSON.stringify(serializeError(error))).not.toThrow();
}

function insideRoot(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-core-fuzz-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

describe('fuzz: plugin manifests (PluginRegistry.register)', () => {
  it('accept or fail with ValidationError naming paths; accepted entries and fs paths stay in the plugin folder', () => {
    const root = path.join(os.tmpdir(), 'kb-fuzz-plugin');
    const outcomes = { accepted: 0, refused: 0 };
    fc.assert(
      // A share of clean manifests besides: every field strict, so the mixed ones are mostly refused.
      fc.property(fc.oneof({ weight: 4, arbitrary: asReceived(manifestArb) }, { weight: 1, arbitrary: cleanManifestArb }), (manifest) => {
        const registry = new PluginRegistry();
        let plugin;
        try {
          plugin = registry.register({ root, manifest });
        } catch (error) {
          expectUsableValidationError(error);
          outcomes.refused++;
          return;
        }
        outcomes.accepted++;
        expect(Object.getPrototypeOf(plugin.manifest)).toBe(Object.prototype);
        for (const handlerId of Object.keys(plugin.manifest.handlers)) {
          const handler = registry.resolve(plugin.id, handlerId);
          expect(insideRoot(root, handler.entryPath)).toBe(true);
          for (const p of [...(handler.permissions.fs?.read ?? []), ...(handler.permissions.fs?.write ?? [])]) {
            expect(insideRoot(root, path.resolve(root, p.replaceAll('\\', '/')))).toBe(true);
          }
          for (const service of Object.keys(handler.permissions.platform ?? {})) {
            expect(['__proto__', 'constructor', 'prototype']).not.toContain(service);
          }
        }
        for (const name of ['toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
          if (!Object.hasOwn(plugin.manifest.handlers, name)) expect(() => registry.resolve(plugin.id, name)).toThrow(/no handler/);
        }
      }),
      params,
    );
    // The generator reaches both paths.
    expect(outcomes.accepted).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(0);
  });
});

describe('fuzz: path tricks in otherwise valid manifests', () => {
  it('an accepted entry or fs path never leaves the plugin folder; a refused one is named by its path', () => {
    const root = path.join(os.tmpdir(), 'kb-fuzz-plugin');
    const outcomes = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(pathTrick, fc.array(pathTrick, { maxLength: 2 }), fc.array(pathTrick, { maxLength: 2 }), (entry, read, write) => {
        const registry = new PluginRegistry();
        const manifest = { id: '@a/b', version: '1', handlers: { run: { entry, permissions: { fs: { read, write } } } } };
        let plugin;
        try {
          plugin = registry.register({ root, manifest });
        } catch (error) {
          expectUsableValidationError(error);
          expect((error as Error).message).toMatch(/handlers\.run\.(entry|permissions\.fs\.(read|write)\[\d\])/);
          outcomes.refused++;
          return;
        }
        outcomes.accepted++;
        const handler = registry.resolve(plugin.id, 'run');
        expect(insideRoot(root, handler.entryPath)).toBe(true);
        for (const p of [...read, ...write]) expect(insideRoot(root, path.resolve(root, p.replaceAll('\\', '/')))).toBe(true);
      }),
      params,
    );
    expect(outcomes.accepted).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(0);
  });
});

describe('fuzz: execution requests (executionRequestSchema)', () => {
  const contextArb = fc.record(
    {
      requestId: mostly(fc.string({ maxLength: 20 }), fc.oneof(trickyString, nasty)),
      tenantId: mostly(fc.string({ maxLength: 20 }), fc.oneof(trickyString, nasty)),
      host: mostly(fc.record({ kind: mostly(fc.constantFrom('cli', 'ws'), trickyString), argv: nasty }, { requiredKeys: ['kind'] }), nasty),
      permissions: mostly(permissionsArb, nasty),
      config: mostly(fc.dictionary(keyArb, nasty, { maxKeys: 4 }), nasty),
      custom: nasty,
    },
    { requiredKeys: [] },
  );
  const requestArb = fc.record(
    {
      pluginId: mostly(fc.constantFrom('@a/b', 'constructor', '__proto__'), fc.oneof(trickyString, nasty)),
      handlerId: mostly(fc.constantFrom('run', 'toString'), fc.oneof(trickyString, nasty)),
      input: nasty,
      context: mostly(contextArb, nasty),
      executionId: fc.oneof(trickyString, fc.stringMatching(/^[A-Za-z0-9][\w.-]{0,130}$/), nasty),
    },
    { requiredKeys: ['pluginId', 'handlerId'] },
  );

  it('parse or fail with ValidationError naming paths; parsed ids are safe and grants are own data', () => {
    const outcomes = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(asReceived(requestArb), (request) => {
        let parsed;
        try {
          parsed = parseWith(executionRequestSchema(), request, 'Invalid execution request');
        } catch (error) {
          expectUsableValidationError(error);
          outcomes.refused++;
          return;
        }
        outcomes.accepted++;
        expect(typeof parsed.pluginId).toBe('string');
        expect(typeof parsed.handlerId).toBe('string');
        if (parsed.executionId !== undefined) expect(unsafeExecutionIdReason(parsed.executionId)).toBeUndefined();
        if (parsed.context !== undefined) {
          expect(Object.getPrototypeOf(parsed.context)).toBe(Object.prototype);
          // A grant is only ever the request's own: never one inherited through a prototype.
          if (parsed.context.permissions !== undefined) expect(Object.hasOwn(parsed.context, 'permissions')).toBe(true);
          if (parsed.context.config !== undefined) expect(Object.getPrototypeOf(parsed.context.config)).toBe(Object.prototype);
        }
      }),
      params,
    );
    expect(outcomes.accepted).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(0);
  });
});

describe('fuzz: workspace ids (unsafeExecutionIdReason / WorkspaceManager.acquire)', () => {
  const idArb = fc.oneof(
    { weight: 2, arbitrary: trickyString },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9][\w.-]{0,140}$/) },
    { weight: 1, arbitrary: nasty },
  );

  it('give a reason or a safe name, and acquire agrees: a 0700 child of root, or WorkspaceError', async () => {
    const root = path.join(tmp, 'ws-root');
    const manager = new WorkspaceManager({ root });
    let created = 0;
    await fc.assert(
      fc.asyncProperty(idArb, async (id) => {
        const reason = unsafeExecutionIdReason(id);
        if (reason !== undefined) {
          expect(typeof reason).toBe('string');
          expect(reason.length).toBeGreaterThan(0);
          const error = await manager.acquire(id as string).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(WorkspaceError);
          expect((error as WorkspaceError).message).toContain(reason);
          expect((error as WorkspaceError).message.length).toBeLessThan(2000);
          expect(() => structuredClone(serializeError(error))).not.toThrow();
          return;
        }
        expect(typeof id).toBe('string');
        const lease = await manager.acquire(id as string);
        created++;
        try {
          expect(path.dirname(lease.dir)).toBe(manager.root);
          expect(path.basename(lease.dir)).toContain(id as string);
          expect((await stat(lease.dir)).mode & 0o777).toBe(0o700);
        } finally {
          await lease.release();
        }
      }),
      params,
    );
    expect(created).toBeGreaterThan(0);
    // Nothing was created anywhere but under root, and nothing is left there.
    expect(await readdir(tmp)).toEqual(['ws-root']);
    expect(await readdir(root)).toEqual([]);
  });
});

describe('fuzz: the error wire form (deserializeError / serializeError / toHandlerError)', () => {
  const wireArb = fc.letrec((tie) => ({
    wire: fc.record(
      {
        $error: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: nasty }),
        message: fc.oneof({ weight: 4, arbitrary: fc.string() }, { weight: 1, arbitrary: nasty }),
        name: fc.oneof(fc.constantFrom('Error', 'TypeError', 'AggregateError', 'RangeError', '__proto__', 'constructor', ''), nasty),
        code: fc.oneof(fc.constantFrom(...ERROR_CODES, 'ENOENT', '__proto__'), nasty),
        details: fc.oneof(fc.dictionary(keyArb, nasty, { maxKeys: 3 }), nasty),
        props: fc.oneof(fc.dictionary(keyArb, nasty, { maxKeys: 3 }), nasty),
        stack: fc.oneof(fc.string(), nasty),
        cause: fc.oneof({ depthSize: 'small' }, nasty, fc.record({ $value: nasty }), tie('wire')),
        errors: fc.oneof({ depthSize: 'small' }, nasty, fc.array(fc.oneof({ depthSize: 'small' }, nasty, tie('wire')), { maxLength: 3 })),
      },
      { requiredKeys: ['$error', 'message'] },
    ),
  })).wire;

  function deepWire(depth: number, via: 'cause' | 'errors'): unknown {
    let wire: Record<string, unknown> = { $error: 1, name: 'AggregateError', message: 'leaf' };
    for (let i = 0; i < depth; i++) {
      wire = via === 'cause' ? { $error: 1, name: 'AggregateError', message: `m${i}`, cause: wire } : { $error: 1, name: 'AggregateError', message: `m${i}`, errors: [wire] };
    }
    return labelled(wire, `deepWire(${depth}, ${via})`);
  }
  const deepWires = [
    deepWire(DEPTH, 'cause'),
    deepWire(DEPTH, 'errors'),
    // As a runner would send it: parsed from JSON text (built as text: JSON.stringify itself overflows at this depth).
    labelled(
      JSON.parse(`${'{"$error":1,"name":"AggregateError","message":"m","errors":['.repeat(DEPTH)}{"$error":1,"message":"leaf"}${']}'.repeat(DEPTH)}`) as object,
      `deepWireJson(${DEPTH})`,
    ),
  ];

  it('deserializeError turns any JSON-ish value into an Error that serialises again', () => {
    fc.assert(
      fc.property(asReceived(wireArb), fc.constantFrom(...deepWires), fc.boolean(), (wire, deep, useDeep) => {
        const error = deserializeError(useDeep ? deep : wire);
        expect(error).toBeInstanceOf(Error);
        expect(typeof error.message).toBe('string');
        expect(typeof error.name).toBe('string');
        expect(() => String(error)).not.toThrow();
        const again = serializeError(error);
        expect(() => JSON.stringify(again)).not.toThrow();
        expect(() => structuredClone(again)).not.toThrow();
        expect(deserializeError(JSON.parse(JSON.stringify(again)))).toBeInstanceOf(Error);
        if (isExecutionError(error)) expect(typeof error.code).toBe('string');
      }),
      params,
    );
  });

  it('toHandlerError and serializeError accept any thrown value', () => {
    fc.assert(
      fc.property(nasty, (thrown) => {
        const error = toHandlerError(thrown);
        expect(isExecutionError(error)).toBe(true);
        if (!isExecutionError(thrown)) expect(error).toBeInstanceOf(HandlerError);
        expect(error.message.length).toBeGreaterThan(0);
        const wire = serializeError(thrown);
        expect(() => structuredClone(wire)).not.toThrow();
        expect(deserializeError(JSON.parse(JSON.stringify(serializeError(error))))).toBeInstanceOf(HandlerError);
      }),
      params,
    );
  });
});
