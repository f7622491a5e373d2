import { AsyncLocalStorage } from 'node:async_hooks';
import { CALLS_IN_FLIGHT, PermissionDeniedError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC, GUARDED } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { cloneRefusesUrl } from '../node-differences.js';
import { testPlatform } from '../test-platform.js';
import { TURN_WATCH_PAYLOAD, turnWatchingPlatform } from '../turn-watch.js';

export function describePermissions(suite: SuiteContext): void {
  describe('permissions and platform', () => {
    preflightTests(suite);
    platformCallTests(suite);
    platformBoundTests(suite);
  });
}

/** Needs the host did not grant fail before any plugin code runs. */
function preflightTests(suite: SuiteContext): void {
  const { make } = suite;
  it('PERMISSION_DENIED before any plugin code runs when a need is not granted', async () => {
    const platform = testPlatform();
    const backend = make({ platform });
    const result = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-kv' });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error).toBeInstanceOf(PermissionDeniedError);
    expect(result.error.message).toContain('platform.kv.get');
    // And how to grant it.
    expect(result.error.message).toContain("the backend's `permissions` option, or for one request with context.permissions");
    expect(platform.calls).toEqual([]);
    // Refused once its handler is known: meta says the limit it would have had (it said 0).
    const limited = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-kv' }, { timeoutMs: 4321 });
    expectError(limited, 'PERMISSION_DENIED');
    expect(limited.meta.timeoutMs).toBe(4321);
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

  // Queue workers read a declared name from their own environment, not the host's (docs/backends/queue.md).
  it.runIf(!suite.capabilities.remoteRunners)("a name the handler declares in permissions.env and the host grants reaches it with the host's value", async () => {
    process.env.KB_CONFORMANCE_GRANTED = 'granted-value';
    try {
      const backend = make({ permissions: { platform: { kv: true }, env: ['KB_CONFORMANCE_GRANTED'] } });
      const result = await backend.execute({ pluginId: GUARDED, handlerId: 'reads-env' });
      expectOk(result);
      expect(result.data).toEqual({ value: 'granted-value' });
    } finally {
      delete process.env.KB_CONFORMANCE_GRANTED;
    }
  });

  it('names every missing permission', async () => {
    const backend = make({ permissions: { platform: { kv: true, secrets: true } } });
    const result = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-secrets' });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.message).toContain('env:KB_TOKEN');
    expect(result.error.message).toContain('network');
    expect(result.error.details).toMatchObject({ missing: ['env:KB_TOKEN', 'network'] });
  });
}

/** At run time a handler reaches only the platform methods it declared. */
function platformCallTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
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

  it("runs the host's platform service in the caller's async context (its AsyncLocalStorage store: the request's tenant), never another caller's", async () => {
    const tenant = new AsyncLocalStorage<string>();
    const backend = make({ maxConcurrency: 1, platform: { kv: { get: async () => tenant.getStore() ?? 'none' } }, permissions: { platform: { kv: true } } });
    for (const request of ['first', 'second', 'third']) {
      const result = await tenant.run(request, () => backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['k'] } }));
      expectOk(result);
      // Before: 'none' on worker-pool (the thread's messages arrive in no caller's context).
      expect(result.data).toEqual({ ok: true, value: request });
    }
  });

  it("runs the host's platform service in the caller's async context for an execution that waited for its slot (handed it inside another's release)", async () => {
    const tenant = new AsyncLocalStorage<string>();
    const backend = make({ maxConcurrency: 1, platform: { kv: { get: async () => tenant.getStore() ?? 'none' } }, permissions: { platform: { kv: true } } });
    // Called together: the second and third wait in the queue and start when the one before them ends.
    const requests = ['first', 'second', 'third'];
    const results = await Promise.all(requests.map((request) => tenant.run(request, () => backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['k'] } }))));
    // Before, had the queued one been started in the context of the release that freed its slot: 'first' for the second.
    expect(results.map((result) => (result.ok ? result.data : result.error.code))).toEqual(requests.map((request) => ({ ok: true, value: request })));
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
    for (const method of ['constructor', '__proto__']) {
      const sneaky = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method } });
      expectOk(sneaky);
      expect(sneaky.data).toMatchObject({ ok: false, code: 'PERMISSION_DENIED' });
    }
    // toString is the language's: answered where the handler runs, never a call to the host's object.
    const printed = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'toString' } });
    expectOk(printed);
    expect(printed.data).toMatchObject({ ok: true, value: '[ctx.platform.kv]' });
    expect(platform.calls.filter((c) => c.method !== 'get')).toEqual([]);
  });

  it("a service declared whole (true) answers its own and its class's methods, never Object's or Function's built-ins; a `__proto__` key of the arguments reaches it as an own key, as JSON.parse makes it", async () => {
    const seen: Array<{ ownKey: boolean; plainPrototype: boolean; hostPolluted: boolean }> = [];
    class Store {
      async inherited() {
        return 'from the class';
      }
    }
    class Whole extends Store {
      async keys(arg: object) {
        seen.push({ ownKey: Object.hasOwn(arg, '__proto__'), plainPrototype: Object.getPrototypeOf(arg) === Object.prototype, hostPolluted: 'polluted' in {} });
        return Object.keys(arg);
      }
    }
    const backend = make({ platform: { whole: new Whole() }, permissions: { platform: { whole: true } } });
    const call = async (method: string, args: unknown[] = []) => {
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-whole', input: { service: 'whole', method, args } });
      expectOk(result);
      return result.data;
    };
    expect(await call('inherited')).toEqual({ ok: true, value: 'from the class' });
    expect(await call('keys', [JSON.parse('{"__proto__":{"polluted":true},"a":1}')])).toEqual({ ok: true, value: ['__proto__', 'a'] });
    expect(seen).toEqual([{ ownKey: true, plainPrototype: true, hostPolluted: false }]);
    for (const method of ['hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable', '__lookupGetter__', 'constructor']) {
      expect(await call(method), method).toMatchObject({ ok: false, code: 'PERMISSION_DENIED', message: expect.stringContaining(`platform.whole.${method}`) });
    }
    expect(await call('bind')).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringContaining('platform.whole.bind is not a method') });
  });

  it("a platform method declared and granted that the host's platform lacks is the host's failure (INTERNAL_ERROR, not the caller's VALIDATION_ERROR), and health() says so", async () => {
    const backend = make({ platform: { kv: { get: () => 'v' } }, permissions: { platform: { kv: true } } });
    const caught = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'set', args: ['k', 1] } });
    expectOk(caught);
    expect(caught.data).toMatchObject({ ok: false, code: 'INTERNAL_ERROR', name: 'InternalError', message: expect.stringContaining("The host's platform has no method kv.set") });
    const escaped = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'set', rethrow: true } });
    expectError(escaped, 'HANDLER_ERROR');
    expect(escaped.error.details).toMatchObject({ name: 'InternalError', code: 'INTERNAL_ERROR' });
    // A queue host's services may be on its workers: only a host that runs the handlers says it.
    if (capabilities.runsHostPlugins === false) return;
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems).toContainEqual(expect.stringMatching(/^plugin @conformance\/basic declares .*platform\.kv\.set.*, which the backend's permissions grant but its platform option does not have/));
    expect(health.problems.join('\n')).not.toContain('platform.kv.get');
    // Given no services at all, a host may give them with each execution (ExecuteOptions.platform): nothing to say.
    const bare = make({ platform: undefined, permissions: { platform: { kv: true } } });
    expect((await bare.health()).problems.join('\n')).not.toContain('declares');
  });

  it("a platform method whose getter on the host's service throws fails each call with what it threw, and health() says so instead of rejecting", async () => {
    const kv = {
      echo: async (value: unknown) => value,
      get get(): never {
        throw new Error('the kv client is not connected');
      },
    };
    const backend = make({ platform: { kv }, permissions: { platform: { kv: true } } });
    const called = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['k'] } });
    expectOk(called);
    expect(called.data).toMatchObject({ ok: false, message: 'the kv client is not connected' });
    if (capabilities.runsHostPlugins === false) return;
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems).toContainEqual(expect.stringMatching(/^plugin @conformance\/basic declares platform\.kv\.get \(the kv client is not connected\), whose getter on the backend's platform option throws/));
    expect(health.problems.join('\n')).not.toContain('platform.kv.echo');
  });

  it('reports a denied platform call the handler lets escape as PERMISSION_DENIED', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'delete', rethrow: true } });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.details).toMatchObject({ phase: 'platform', resource: 'platform.kv.delete', service: 'kv', method: 'delete' });
  });

  it('carries a host service error back to the handler', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail', args: ['boom'] } });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, message: 'boom' });
  });

  it("a host service's error reaches the handler as a copy without the host's stack frames (its files and layout), its cause's neither; name, message and props stay", async () => {
    const platform = {
      kv: {
        fail: async () => {
          throw new RangeError('the host says no', { cause: new Error('deeper') });
        },
      },
    };
    const backend = make({ platform, permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail' } });
    expectOk(result);
    const data = result.data as { name: string; message: string; stack: string; causeStack: string };
    expect(data).toMatchObject({ ok: false, name: 'RangeError', message: 'the host says no' });
    expect(data.stack).toBe('RangeError: the host says no\n    at platform.kv.fail (the host)');
    expect(data.causeStack).toBe('Error: deeper\n    at platform.kv.fail (the host)');
  });

  it('a host service that rejects with something not an Error: the handler gets an Error saying what was thrown, on every backend', async () => {
    const platform = {
      kv: {
        fail: async () => {
          throw 'a string of the host';
        },
      },
    };
    const backend = make({ platform, permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail' } });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, name: 'Error', message: expect.stringContaining('platform.kv.fail threw a string') });
  });

  it("a channel bridge (ExecuteOptions.channel.call) is called as a service is: its result a copy, a non-Error it throws an Error saying so, a value that cannot cross refused naming the call", async () => {
    const backend = make();
    const run = (call: (method: string, args: unknown[]) => Promise<unknown>) =>
      backend.execute({ pluginId: BASIC, handlerId: 'channel-send', input: { hello: 1 } }, { channel: { connectionId: 'c-1', path: '/chat', call } });
    const sent: unknown[] = [];
    const answered = await run(async (method, args) => (sent.push([method, ...args]), { delivered: true }));
    expectOk(answered);
    expect(answered.data).toEqual({ ok: true, value: { delivered: true } });
    expect(sent).toEqual([['send', { hello: 1 }]]);
    const threw = await run(async () => {
      throw 'a string of the bridge';
    });
    expectOk(threw);
    expect(threw.data).toMatchObject({ ok: false, isError: true, message: expect.stringContaining('channel.send threw a string') });
    const unsendable = await run(async () => () => 1);
    expectOk(unsendable);
    expect(unsendable.data).toMatchObject({ ok: false, isError: true, code: 'VALIDATION_ERROR', message: expect.stringMatching(/^channel\.send result cannot be sent across the execution boundary: /) });
  });

  it('a host service result that cannot cross to the handler is an error there naming the call and where the value is', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'unsendable' } });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR' });
    const { message } = result.data as { message: string };
    expect(message).toBe('platform.kv.unsendable result cannot be sent across the execution boundary: A function could not be cloned. (at result.format)');
    // The host's function is not quoted to the plugin (its source: a secret written in it).
    expect(JSON.stringify(result.data)).not.toContain('host secret');
    // Said once, whatever the transport said on its way.
    expect(message.split('cannot be sent').length, message).toBe(2);
    // Refused in the host, so its stack is cut to the call as a service's own error is: no host frames (files, layout).
    expect((result.data as { stack: string }).stack).toBe(`ValidationError: ${message}\n    at platform.kv.unsendable (the host)`);
  });

  it('a platform call with more arguments than a service is passed (60,000) rejects in the handler with VALIDATION_ERROR saying so, on every backend', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'echo', args: new Array(60_000).fill(0) } });
    expectOk(result);
    // Before: in-process, a bare RangeError (Maximum call stack size exceeded) "at platform.kv.echo (the host)", as if the service threw it; worker-pool called the service.
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: 'platform.kv.echo was called with 60000 arguments; a service is passed at most 10000 (pass them as one array)' });
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'echo', args: [1, 2] } });
    expectOk(next);
    expect(next.data).toEqual({ ok: true, value: 1 });
  });

  it('a host service result with a getter that throws is an error in the handler naming the call and where, and the host and the next execution carry on', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'unreadable' } });
    expectOk(result);
    // Before: the host weighed the answer again after its send had failed on the getter, and the getter's throw ended the host's process.
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(/^platform\.kv\.unreadable result cannot be sent across the execution boundary: .*the session is closed.* \(at result\.owner\)$/) });
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['greeting'] } });
    expectOk(next);
    expect(next.data).toEqual({ ok: true, value: 'hello' });
  });

  it.runIf(cloneRefusesUrl())('a host service result holding a URL (Node 22 and later do not clone one) is an error there naming where, on every backend, not an empty object', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'link' } });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(/^platform\.kv\.link result cannot be sent across the execution boundary: .* \(at result\.at\)$/) });
  });

  it('a platform call whose arguments cannot cross rejects in the handler with VALIDATION_ERROR naming where in them the refused value is', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-unsendable-args' });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', path: 'arguments[0].list[1].fn' });
    expect((result.data as { message: string }).message).toMatch(/^platform\.kv\.echo arguments cannot be sent across the execution boundary: .* \(at arguments\[0\]\.list\[1\]\.fn\)$/);
  });
}

/** A `kv.echo` that answers after a millisecond and counts the calls it has at once. */
function countingEcho() {
  const seen: number[] = [];
  let now = 0;
  let most = 0;
  const kv = {
    async echo(i: number) {
      seen.push(i);
      most = Math.max(most, ++now);
      await new Promise((resolve) => setTimeout(resolve, 1));
      now--;
      return i;
    },
  };
  return { platform: { kv }, seen, most: () => most };
}

/** CALLS_IN_FLIGHT: what one execution can have in the host's services at once. */
function platformBoundTests(suite: SuiteContext): void {
  const { make } = suite;
  it(`runs at most ${CALLS_IN_FLIGHT} of one execution's platform calls in the host at once, the rest in the order made`, async () => {
    const echo = countingEcho();
    const backend = make({ platform: echo.platform, permissions: { platform: { kv: ['echo'] } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 500, await: true } }, { timeoutMs: 30_000 });
    expectOk(result);
    const order = Array.from({ length: 500 }, (_, i) => i);
    expect(result.data).toEqual(order);
    expect(echo.seen).toEqual(order);
    // Not exactly the bound: some may be answered before the host has read the rest.
    expect(echo.most()).toBeLessThanOrEqual(CALLS_IN_FLIGHT);
    expect(echo.most()).toBeGreaterThan(1);
  });

  it("ctx.platform and its services printed as debug code does (String(), a template, JSON.stringify, toLocaleString) start no platform call: the one real call is the only one the host sees", async () => {
    const echo = countingEcho();
    const backend = make({ platform: echo.platform, permissions: { platform: { kv: ['echo'] } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-printed' }, { timeoutMs: 20_000 });
    // Before: toString/toJSON taken for methods, refused calls nobody awaited (in-process: the host's own process crashed).
    expectOk(result);
    expect(result.data).toEqual({ printed: ['[ctx.platform.kv]', '[ctx.platform]', '{"kv":{},"platform":{}}', '[ctx.platform.kv],[ctx.platform]'], answer: 'real' });
    expect(echo.seen).toEqual(['real']);
  });

  it('answers several platform calls at once with large answers (a queue sends each in parts, side by side), and large arguments', async () => {
    const big = 'x'.repeat(1_000_000);
    const kv = { echo: async (value: unknown) => (value === 'big' ? big : value) };
    const backend = make({ platform: { kv }, permissions: { platform: { kv: ['echo'] } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 3, await: true, arg: 'big' } }, { timeoutMs: 20_000 });
    expectOk(result);
    expect((result.data as string[]).map((each) => each === big)).toEqual([true, true, true]);
    const echoed = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 3, await: true, arg: big } }, { timeoutMs: 20_000 });
    expectOk(echoed);
    expect((echoed.data as string[]).map((each) => each === big)).toEqual([true, true, true]);
  });

  it("sends an execution's large platform answers in turns of the host's event loop of their own, so that its timers (time limits among them) run between them", async () => {
    const watch = turnWatchingPlatform();
    const backend = make({ platform: watch.platform, permissions: { platform: { kv: ['echo'] } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 4, await: true } }, { timeoutMs: 60_000 });
    expectOk(result);
    expect((result.data as Array<{ i: number; payload: string }>).map((each) => [each.i, each.payload === TURN_WATCH_PAYLOAD])).toEqual([0, 1, 2, 3].map((i) => [i, true]));
    // Before: [true, false, false, false], the four encoded back to back (16 answers of 50 MB held a host's loop for 25 s).
    expect(watch.turnedBefore).toEqual([true, true, true, true]);
  });

  it('platform calls a handler fires and does not await reach the host before its result', async () => {
    const echo = countingEcho();
    const backend = make({ platform: echo.platform, permissions: { platform: { kv: ['echo'] } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 300 } }, { timeoutMs: 30_000 });
    expectOk(result);
    expect(result.data).toBe('fired');
    expect(echo.seen).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(echo.most()).toBeLessThanOrEqual(CALLS_IN_FLIGHT);
  });
}
