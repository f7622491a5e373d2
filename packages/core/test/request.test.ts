import { HandlerError, ValidationError } from '../src/index.js';
import { cloneForWire, formatPath, parseWith, validationError } from '../src/backend-kit.js';
import { contextDescriptorSchema, executionRequestSchema, parseExecutionRequest, validateExecuteOptions } from '../src/host/request.js';
import { validateWithForeignSchema } from '../src/validation.js';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';

function failure(fn: () => unknown): ValidationError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ValidationError);
  return caught as ValidationError;
}

describe('formatPath and validationError', () => {
  it('writes readable JSON paths', () => {
    expect(formatPath(['handlers', 'run', 'entry'])).toBe('handlers.run.entry');
    expect(formatPath(['channels', 0, 'handler'])).toBe('channels[0].handler');
    expect(formatPath(['a b', '__proto__', 'x-y'])).toBe('["a b"].__proto__["x-y"]');
    expect(formatPath([], '')).toBe('(root)');
    expect(formatPath(['n'], 'input')).toBe('input.n');
    expect(formatPath([Symbol('s')])).toBe('["Symbol(s)"]');
  });

  it('lists at most 20 problems and says how many more there are; details keep all', () => {
    const issues = Array.from({ length: 25 }, (_, i) => ({ path: `p${i}`, message: 'bad' }));
    const error = validationError('Subject', issues, { extra: 1 });
    const lines = error.message.split('\n');
    expect(lines[0]).toBe('Subject:');
    expect(lines).toHaveLength(22);
    expect(lines.at(-1)).toBe('  - … and 5 more');
    expect(error.details).toEqual({ extra: 1, issues });
  });

  it("cuts its message as the wire cuts one (64 Ki characters): a caller's 10 MB key or value is not written twice more (message and stack) for a host to log", () => {
    const huge = 'k'.repeat(10_000_000);
    const unknownField = failure(() => parseExecutionRequest({ pluginId: 'p', handlerId: 'h', [huge]: 1 }));
    const badValue = failure(() => validateExecuteOptions({ timeoutMs: huge }));
    for (const error of [unknownField, badValue]) {
      expect(error.message.length).toBeLessThanOrEqual(64 * 1024);
      expect(error.stack!.length).toBeLessThan(80 * 1024);
    }
    expect(unknownField.message).toMatch(/^Invalid execution request:\n {2}- k+… \[\d+ more chars\]$/);
    expect(badValue.message).toMatch(/^Invalid execute\(\) options:\n {2}- timeoutMs: must be a whole, positive number of milliseconds up to \d+, got the string "k+… \[\d+ more chars\]$/);
    // details keep the issues as they came.
    expect((unknownField.details.issues as Array<{ path: string }>)[0]!.path).toBe(huge);
  });
});

describe('parseWith: messages in one wording', () => {
  it("says zod's generic problems the way every other message here does, and keeps a schema's own", () => {
    const schema = z.object({
      n: z.number().int().positive().max(10),
      m: z.number().min(8),
      handlers: z.record(z.string(), z.string()),
      name: z.string().min(1).max(3),
      tags: z.array(z.string()).min(1).max(2),
      mode: z.enum(['a', 'b']),
      only: z.literal('x'),
      id: z.string().regex(/^[a-z]+$/, 'must be lower-case letters'),
    });
    const messages = (value: unknown) => Object.fromEntries((failure(() => parseWith(schema, value, 'x')).details.issues ?? []).map((i) => [i.path, i.message]));
    expect(messages({ n: 'five', m: 3, handlers: [], name: '', tags: [], mode: 'c', only: 'y', id: 'A' })).toEqual({
      n: 'must be a number, got string',
      m: 'must be at least 8',
      handlers: 'must be an object, got array',
      name: 'must not be empty',
      tags: 'must have at least 1 item',
      mode: 'must be one of "a", "b"',
      only: 'must be "x"',
      id: 'must be lower-case letters',
    });
    expect(messages({ n: 0, m: 8, handlers: {}, name: 'abcd', tags: ['a', 'b', 'c'], mode: 'a', only: 'x', id: 'a' })).toEqual({
      n: 'must be greater than 0',
      name: 'must be at most 3 characters',
      tags: 'must have at most 2 items',
    });
    expect(messages({ n: 1.5, m: 8, handlers: {}, name: 'a', tags: ['a'], mode: 'a', only: 'x' })).toEqual({ n: 'must be an integer', id: 'is required' });
  });
});

describe('executionRequestSchema', () => {
  it('accepts a full request and keeps unknown context keys', () => {
    const request = {
      pluginId: '@a/b',
      handlerId: 'run',
      input: { any: ['thing'] },
      executionId: 'run-1',
      context: { requestId: 'r', tenantId: 't', host: { kind: 'cli', argv: ['x'] }, permissions: { network: true }, config: { a: 1 }, custom: [1] },
    };
    expect(parseWith(executionRequestSchema(), request, 'req')).toEqual(request);
  });

  it('refuses a context field named almost "permissions" (a typo would leave the wider grants of the backend in force)', () => {
    for (const key of ['permisions', 'Permissions', 'permission']) {
      const error = failure(() => parseExecutionRequest({ pluginId: '@a/b', handlerId: 'run', context: { [key]: { platform: {} } } }));
      expect(error.message).toContain(`context.${key}: unknown field; did you mean "permissions"?`);
    }
    expect(parseExecutionRequest({ pluginId: '@a/b', handlerId: 'run', context: { hosts: 1, perms: 2 } }).context).toEqual({ hosts: 1, perms: 2 });
  });

  it('names the key meant for a misspelt one inside context.permissions, as it does in the backend\'s permissions option', () => {
    const error = failure(() => parseExecutionRequest({ pluginId: '@a/b', handlerId: 'run', context: { permissions: { fs: { raed: [] }, Platform: {} } } }));
    expect(error.details.issues).toEqual([
      { path: 'context.permissions.fs', message: 'unknown key "raed"; did you mean "read"?' },
      { path: 'context.permissions', message: 'unknown key "Platform"; did you mean "platform"?' },
    ]);
  });

  it('refuses context.permissions given as undefined (a tenant with no grant would run under the backend\'s wider one); left out, the backend\'s grant applies', () => {
    const error = failure(() => parseExecutionRequest({ pluginId: '@a/b', handlerId: 'run', context: { tenantId: 't', permissions: undefined } }));
    expect(error.message).toContain("context.permissions: is undefined: leave the key out for the backend's grant, or give {} to grant nothing");
    expect(parseExecutionRequest({ pluginId: '@a/b', handlerId: 'run', context: { tenantId: 't' } }).context).toEqual({ tenantId: 't' });
  });

  it('names every bad field', () => {
    const error = failure(() =>
      parseWith(
        executionRequestSchema(),
        { pluginId: '', handlerId: 5, executionId: '../x', context: { host: { kind: '' }, permissions: { network: 'yes' }, config: [] } },
        'Invalid execution request',
      ),
    );
    for (const p of ['pluginId', 'handlerId', 'executionId', 'context.host.kind', 'context.permissions.network', 'context.config']) {
      expect(error.message).toContain(`  - ${p}: `);
    }
    expect(error.message).toContain('unsafe id');
    expect(error.message).toContain('  - pluginId: must not be empty');
    expect(error.message).toContain('  - handlerId: must be a string');
  });

  it('says a missing id is required, and a long one how long it may be', () => {
    const missing = failure(() => parseWith(executionRequestSchema(), { input: 1 }, 'req')).message;
    expect(missing).toContain('  - pluginId: is required');
    expect(missing).toContain('  - handlerId: is required');
    const long = failure(() => parseWith(executionRequestSchema(), { pluginId: 'p', handlerId: 'h'.repeat(129), executionId: 'e'.repeat(129) }, 'req')).message;
    expect(long).toContain('  - handlerId: must be at most 128 characters');
    // One issue for the id's length, not zod's generic one beside ours.
    expect(long.match(/executionId/g)).toHaveLength(1);
    expect(long).toContain('  - executionId: unsafe id: must be at most 128 characters, got 129');
  });

  it('refuses a request that is not an object, naming the root', () => {
    for (const request of [undefined, null, 'x', 42, []]) {
      expect(failure(() => parseWith(executionRequestSchema(), request, 'req')).message).toContain('(root): must be an object: { pluginId, handlerId');
    }
  });

  it('drops a JSON __proto__ key in the context instead of inheriting grants from it', () => {
    const context = JSON.parse('{"__proto__":{"permissions":{"network":true}},"requestId":"r"}') as unknown;
    const parsed = parseWith(contextDescriptorSchema(), context, 'ctx');
    expect(parsed.permissions).toBeUndefined();
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(parsed.requestId).toBe('r');
  });
});

describe('parseExecutionRequest', () => {
  /** The schema's verdict: its output, or the issues of its ValidationError. */
  function bySchema(request: unknown): unknown {
    try {
      return parseWith(executionRequestSchema(), request, 'Invalid execution request');
    } catch (error) {
      return (error as ValidationError).details.issues;
    }
  }
  function byParse(request: unknown): unknown {
    try {
      return parseExecutionRequest(request);
    } catch (error) {
      return (error as ValidationError).details.issues;
    }
  }

  it('gives what the schema gives for requests with and without a host id and a context', () => {
    const ids = [undefined, 'run-1', 'a'.repeat(200), '', '../x', '/abs', 'a/b', 'x\0y', '.hidden', 'ok.id_2-3', 42, null];
    // (A JSON-made `__proto__` key, which the schema leaves out and the request keeps, has a test of its own below.)
    const contexts = [undefined, {}, Object.create(null), { requestId: 'r' }, [], 'ctx', null, { [Symbol('s')]: 1 }];
    for (const executionId of ids) {
      for (const [i, context] of contexts.entries()) {
        const request: Record<string, unknown> = { pluginId: '@a/b', handlerId: 'run', input: { n: 1 } };
        if (executionId !== undefined) request.executionId = executionId;
        if (context !== undefined) request.context = context;
        expect(byParse(request), `executionId ${String(executionId)}, context #${i}`).toEqual(bySchema(request));
      }
    }
  });

  it("keeps a JSON __proto__ key of the context, its host and its config as an own key, as data (as the input keeps one), never as a grant", () => {
    const json = '{"__proto__":{"permissions":{"network":true}},"host":{"kind":"rest","__proto__":{"a":1}},"config":{"__proto__":{"b":2}}}';
    const parsed = parseExecutionRequest({ pluginId: 'p', handlerId: 'h', context: JSON.parse(json) });
    const context = parsed.context as Record<string, object>;
    for (const [value, proto] of [[context, { permissions: { network: true } }], [context.host, { a: 1 }], [context.config, { b: 2 }]] as const) {
      expect(Object.getOwnPropertyDescriptor(value, '__proto__')).toMatchObject({ value: proto, enumerable: true });
      expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    }
    expect(parsed.context?.permissions).toBeUndefined();
    expect(JSON.stringify(parsed.context)).toBe('{"host":{"kind":"rest","__proto__":{"a":1}},"config":{"__proto__":{"b":2}},"__proto__":{"permissions":{"network":true}}}');
  });

  it('hands back a context of its own, not the caller\'s object', () => {
    const context = {};
    const parsed = parseExecutionRequest({ pluginId: 'p', handlerId: 'h', context });
    expect(parsed.context).toEqual({});
    expect(parsed.context).not.toBe(context);
  });
});

describe('validateExecuteOptions', () => {
  it('accepts nothing, or well-formed options', () => {
    expect(validateExecuteOptions(undefined)).toEqual({});
    expect(validateExecuteOptions(null)).toEqual({});
    const options = { signal: new AbortController().signal, timeoutMs: 5, onLog: () => undefined, onEvent: () => undefined, keepWorkspace: true };
    const checked = validateExecuteOptions(options);
    expect(checked).toEqual(options);
    // A copy: the caller may change its own object once execute() has it.
    expect(checked).not.toBe(options);
  });

  it('names every bad option', () => {
    const error = failure(() =>
      validateExecuteOptions({ timeoutMs: Number.NaN, signal: {}, onLog: 'x', onEvent: 1, keepWorkspace: 'yes', channel: { connectionId: 1 } }),
    );
    for (const name of ['timeoutMs', 'signal', 'onLog', 'onEvent', 'keepWorkspace', 'channel']) expect(error.message).toContain(`  - ${name}:`);
    expect(error.details.issues).toHaveLength(6);
  });

  it('names each bad callback or service option by its own name, as each is checked', () => {
    const error = failure(() =>
      validateExecuteOptions({ onStart: 'x', platform: 1, platformForward: {}, outputPace: 5, beginBy: Date.now() + 1000 }),
    );
    expect(error.details).toMatchObject({ phase: 'options' });
    expect(error.details.issues).toEqual([
      { path: 'onStart', message: 'must be a function' },
      { path: 'platform', message: 'must be an object of services' },
      { path: 'platformForward', message: 'must be a function (service, method, args) => Promise' },
      { path: 'outputPace', message: 'must be a function () => Promise | undefined' },
      { path: 'beginBy', message: 'must be a function () => number (milliseconds since the epoch)' },
    ]);
  });

  it.each([0, -1, Infinity, 2 ** 31, '100', 0.001, 10.5])('refuses timeoutMs %o (a whole number of ms, as every other time limit)', (timeoutMs) => {
    expect(failure(() => validateExecuteOptions({ timeoutMs })).message).toContain(`timeoutMs: must be a whole, positive number of milliseconds up to 2147483647, got ${typeof timeoutMs === 'string' ? `the string "${timeoutMs}"` : String(timeoutMs)}`);
  });

  it("a traceparent or timeoutMs with no text (a null-prototype object, a toString() that throws) is refused naming it, not thrown out as the backend's own error", () => {
    const textless = [Object.create(null), { toString: () => { throw new Error('no text'); } }];
    for (const value of textless) {
      for (const key of ['traceparent', 'timeoutMs']) {
        const error = failure(() => validateExecuteOptions({ [key]: value }));
        expect(error.details.issues).toEqual([{ path: key, message: expect.stringMatching(/, got an object that cannot be shown as text$/) }]);
      }
    }
  });

  it('reads each option once: a getter that answers the check one thing and the use another cannot slip a bad value past', () => {
    let reads = 0;
    const shifty = Object.defineProperty({}, 'traceparent', { enumerable: true, get: () => (reads++ === 0 ? undefined : 'garbage') });
    expect(validateExecuteOptions(shifty)).toEqual({});
    expect(reads).toBe(1);
    let timeoutReads = 0;
    const changing = Object.defineProperty({}, 'timeoutMs', { enumerable: true, get: () => (timeoutReads++ === 0 ? 'soon' : 100) });
    expect(failure(() => validateExecuteOptions(changing)).message).toContain('timeoutMs: must be a whole, positive number of milliseconds');
  });

  it('says a BigInt timeoutMs is one (its number alone read as if that number were refused)', () => {
    expect(failure(() => validateExecuteOptions({ timeoutMs: 10n })).message).toContain('got the BigInt 10n');
  });

  it("points the names of other pools' options at the ones meant here", () => {
    expect(failure(() => validateExecuteOptions({ abortSignal: new AbortController().signal, onProgress: () => undefined })).details.issues).toEqual([
      { path: 'abortSignal', message: 'unknown option; did you mean "signal"?' },
      { path: 'onProgress', message: 'unknown option; did you mean "onEvent"?' },
    ]);
  });

  it('refuses options that are not an object', () => {
    expect(failure(() => validateExecuteOptions('fast')).message).toContain('string');
  });

  it('refuses an option it does not know, with the one meant when it is close (never ignored: `timeout` would run 30 s)', () => {
    expect(failure(() => validateExecuteOptions({ timeout: 1000, keepWorkspaces: true, colour: 'red' })).details.issues).toEqual([
      { path: 'timeout', message: 'unknown option; did you mean "timeoutMs"?' },
      { path: 'keepWorkspaces', message: 'unknown option; did you mean "keepWorkspace"?' },
      { path: 'colour', message: 'unknown option' },
    ]);
    // A backend's option misspelt here: the one meant, and where it goes.
    const backends = 'not an option of execute(); it is an option of the backend, given when it is made: createExecutionBackend';
    expect(failure(() => validateExecuteOptions({ maxConcurency: 2, concurency: 2, defaultTimeoutMS: 5 })).details.issues).toEqual([
      { path: 'maxConcurency', message: `unknown option; did you mean "maxConcurrency"? (${backends}({ type, maxConcurrency }))` },
      { path: 'concurency', message: `unknown option; did you mean "maxConcurrency"? (${backends}({ type, maxConcurrency }))` },
      { path: 'defaultTimeoutMS', message: `unknown option; did you mean "defaultTimeoutMs"? (${backends}({ type, defaultTimeoutMs }))` },
    ]);
  });

  it("says where a backend's option or a request's field goes when it is given as an execute() option", () => {
    expect(failure(() => validateExecuteOptions({ maxThreads: 2, cancelGraceMs: 5, defaultTimeoutMs: 10, input: {} })).details.issues).toEqual([
      { path: 'maxThreads', message: "not an option of execute(); it is an option of the worker-pool backend, given when one is made: createExecutionBackend({ type: 'worker-pool', maxThreads })" },
      { path: 'cancelGraceMs', message: 'not an option of execute(); it is an option of the worker-pool and subprocess backends, given when one is made: createExecutionBackend({ type, cancelGraceMs })' },
      { path: 'defaultTimeoutMs', message: 'not an option of execute(); it is an option of the backend, given when it is made: createExecutionBackend({ type, defaultTimeoutMs })' },
      { path: 'input', message: "not an option; it is a field of the request, execute()'s first argument: backend.execute({ pluginId, handlerId, input }, options)" },
    ]);
  });
});

describe('validateWithForeignSchema (a handler’s input schema)', () => {
  it('uses zod’s safeParse and returns the parsed (transformed) value', () => {
    const schema = z.object({ n: z.coerce.number() });
    expect(validateWithForeignSchema(schema, { n: '4' }, 'in')).toEqual({ n: 4 });
    const error = failure(() => validateWithForeignSchema(schema, { n: 'x' }, 'Invalid input'));
    expect(error.message).toContain('  - input.n: ');
    expect(error.details.phase).toBe('input');
  });

  it('uses a Standard Schema validator, with path segments given as { key }', () => {
    const schema = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value: unknown) => (value === 1 ? { value: 'one' } : { issues: [{ message: 'must be 1', path: [{ key: 'a' }, 0] }] }),
      },
    };
    expect(validateWithForeignSchema(schema, 1, 'in')).toBe('one');
    expect(failure(() => validateWithForeignSchema(schema, 2, 'in')).message).toContain('  - input.a[0]: must be 1');
  });

  it("refuses asynchronous Standard Schema validation: the plugin's schema is at fault (HandlerError)", () => {
    const schema = { '~standard': { validate: async () => ({ value: 1 }) } };
    expect(() => validateWithForeignSchema(schema, 1, 'handler "h" of plugin "p"')).toThrow(new HandlerError('Handler "h" of plugin "p": its input schema is asynchronous (~standard.validate() returned a promise); only synchronous schemas are supported'));
  });

  it("gives HandlerError, not a TypeError, for a schema that is not one or returns nonsense: the plugin's bug, not the caller's input", () => {
    for (const schema of [undefined, {}, 42, { safeParse: () => undefined }, { '~standard': { validate: () => null } }]) {
      let caught: unknown;
      try {
        validateWithForeignSchema(schema, 1, 'handler "h" of plugin "p"');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(HandlerError);
      expect((caught as Error).message).toMatch(/^Handler "h" of plugin "p": its (input schema returned an unusable result|"input" is not a schema)/);
    }
  });

  it('a refusal with issues that are not issues is still the caller\'s input refused (ValidationError)', () => {
    for (const schema of [
      { safeParse: () => ({ success: false, error: { issues: 'nope' } }) },
      { '~standard': { validate: () => ({ issues: [null, 5, { path: 'x' }] }) } },
    ]) {
      const error = failure(() => validateWithForeignSchema(schema, 1, 'handler "h" of plugin "p"'));
      expect(error.message).toMatch(/^Invalid input for handler "h" of plugin "p"/);
      expect(error.details.phase).toBe('input');
    }
  });

  it('keeps a schema\'s issues as every backend carries them: holes left out, the first 100 places read, whatever the list\'s length', () => {
    const issue = (i: number) => ({ message: 'm', path: ['a', i] });
    const holey = failure(() => validateWithForeignSchema({ '~standard': { validate: () => ({ issues: [, issue(1)] }) } }, 1, 'handler "h" of plugin "p"'));
    expect(holey.details.issues).toEqual([{ path: 'input.a[1]', message: 'm' }]);
    const many = failure(() => validateWithForeignSchema({ '~standard': { validate: () => ({ issues: Array.from({ length: 100_000 }, (_, i) => issue(i)) }) } }, 1, 'handler "h" of plugin "p"'));
    expect(many.details.issues).toHaveLength(100);
    expect(many.details.issues![99]).toEqual({ path: 'input.a[99]', message: 'm' });
    // A billion places, one filled far out: read no further than the first 100 (a walk of them all took the host's loop for ~18 s).
    const sparse: unknown[] = [];
    sparse.length = 1e9;
    sparse[5e8] = issue(0);
    const far = failure(() => validateWithForeignSchema({ '~standard': { validate: () => ({ issues: sparse }) } }, 1, 'handler "h" of plugin "p"'));
    expect(far.details.issues).toEqual([{ path: 'input', message: 'invalid' }]);
  });
});

describe('cloneForWire', () => {
  it('copies structured-cloneable values and passes primitives through', () => {
    const value = { d: new Date(0), m: new Map([[1, 2]]) };
    const copy = cloneForWire(value, 'thing');
    expect(copy).toEqual(value);
    expect(copy).not.toBe(value);
    expect(cloneForWire('s', 'thing')).toBe('s');
    expect(cloneForWire(undefined, 'thing')).toBeUndefined();
  });

  it.each([[() => 1], [{ f() {} }], [Symbol('s')], [new WeakMap()]])('refuses %o with ValidationError naming what was sent', (value) => {
    const error = failure(() => cloneForWire(value, 'the result of x'));
    expect(error.message).toContain('the result of x cannot be sent across the execution boundary');
    expect(error.details).toMatchObject({ what: 'the result of x', reason: 'not-serializable' });
  });

  it('says where in the value the refused thing is', () => {
    const error = failure(() => cloneForWire({ a: [1, 2, { b: new Map([['k', Symbol('s')]]) }] }, 'handler input'));
    expect(error.message).toMatch(/ \(at input\.a\[2\]\.b\.k\)$/);
    expect(error.details).toMatchObject({ path: 'input.a[2].b.k' });
    const cyclic: Record<string, unknown> = { n: 1 };
    cyclic.self = cyclic;
    cyclic.fn = () => 1;
    expect(failure(() => cloneForWire(cyclic, 'input')).details).toMatchObject({ path: 'input.fn' });
  });
});
