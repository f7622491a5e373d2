import { spawnSync } from 'node:child_process';
import { InternalError, PermissionDeniedError, ValidationError, mergePermissions, missingPermissions, type PermissionSpec, type Platform } from '../src/index.js';
import { createPlatformProxy, parseWith } from '../src/backend-kit.js';
import { allowsPlatformCall, assertGranted, permissionSpecSchema } from '../src/host/permissions.js';
import { invokePlatform, unprovidedPlatformMethods } from '../src/host/platform-gateway.js';
import { describe, expect, it } from 'vitest';

const subject = { pluginId: '@t/plugin', handlerId: 'run' };

describe('mergePermissions', () => {
  it('unites lists (fs, env, platform methods), overrides booleans; true for a service wins', () => {
    const base: PermissionSpec = {
      platform: { cache: ['get'], logger: true },
      fs: { read: ['data', 'shared'] },
      env: ['HOME'],
      network: true,
      childProcess: false,
    };
    const over: PermissionSpec = {
      platform: { cache: ['set'], storage: ['put'] },
      fs: { read: ['shared', 'more'], write: ['out'] },
      env: ['HOME', 'LANG'],
      network: false,
    };
    expect(mergePermissions({ platform: { cache: ['get'] } }, { platform: { cache: true } })).toEqual({ platform: { cache: true } });
    expect(mergePermissions({ platform: { cache: true } }, { platform: { cache: ['get'] } })).toEqual({ platform: { cache: true } });
    expect(mergePermissions(base, over)).toEqual({
      platform: { cache: ['get', 'set'], logger: true, storage: ['put'] },
      fs: { read: ['data', 'shared', 'more'], write: ['out'] },
      env: ['HOME', 'LANG'],
      network: false,
      childProcess: false,
    });
  });

  it('handles missing sides without sharing the input object', () => {
    const spec: PermissionSpec = { env: ['A'] };
    expect(mergePermissions(undefined, undefined)).toEqual({});
    const a = mergePermissions(spec, undefined);
    const b = mergePermissions(undefined, spec);
    expect(a).toEqual(spec);
    expect(b).toEqual(spec);
    expect(a).not.toBe(spec);
    expect(b).not.toBe(spec);
    expect(mergePermissions({}, {})).toEqual({});
  });

  it('keeps own __proto__-named data as data (no prototype change)', () => {
    const over = JSON.parse('{"platform":{"__proto__":["x"],"svc":true}}') as PermissionSpec;
    const merged = mergePermissions({ platform: { a: true } }, over);
    expect(Object.getPrototypeOf(merged.platform)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(merged.platform!.svc).toBe(true);
  });
});

describe('missingPermissions', () => {
  it('a needed fs path with a "\\" is never covered: checked as "/", it is part of a name on a POSIX system ("data\\x/../kb.plugin.json" is the manifest there)', () => {
    expect(missingPermissions({ fs: { write: ['data\\x/../kb.plugin.json'] } }, { fs: { write: ['data'] } })).toEqual(['fs.write:data\\x/../kb.plugin.json']);
    expect(missingPermissions({ fs: { read: ['data\\x/..'] } }, { fs: { read: ['data'] } })).toEqual(['fs.read:data\\x/..']);
  });
  it('needs nothing, misses nothing', () => {
    expect(missingPermissions({}, undefined)).toEqual([]);
    expect(missingPermissions({}, {})).toEqual([]);
  });

  it('platform: a whole service needs true; a method list is covered by true or by each method', () => {
    expect(missingPermissions({ platform: { cache: true } }, { platform: { cache: true } })).toEqual([]);
    expect(missingPermissions({ platform: { cache: ['get', 'set'] } }, { platform: { cache: true } })).toEqual([]);
    expect(missingPermissions({ platform: { cache: ['get', 'set'] } }, { platform: { cache: ['get', 'set', 'del'] } })).toEqual([]);
    expect(missingPermissions({ platform: { cache: ['get', 'set'] } }, { platform: { cache: ['get'] } })).toEqual(['platform.cache.set']);
    expect(missingPermissions({ platform: { cache: ['get'] } }, {})).toEqual(['platform.cache.get']);
    expect(missingPermissions({ platform: { cache: true } }, {})).toEqual(['platform.cache']);
    expect(missingPermissions({ platform: { cache: true } }, { platform: { cache: ['get'] } })).toEqual(['platform.cache.* (granted only get)']);
    expect(missingPermissions({ platform: { cache: true } }, { platform: { cache: [] } })).toEqual(['platform.cache.* (granted only nothing)']);
    expect(missingPermissions({ platform: { cache: ['get'] } }, { platform: { storage: true } })).toEqual(['platform.cache.get']);
  });

  it('platform: a service named like an Object.prototype member is not granted by inheritance', () => {
    expect(missingPermissions({ platform: { toString: true as const } }, { platform: {} })).toEqual(['platform.toString']);
    expect(missingPermissions({ platform: { hasOwnProperty: ['call'] } }, {})).toEqual(['platform.hasOwnProperty.call']);
    expect(missingPermissions({ platform: { svc: ['constructor', 'toString'] } }, { platform: { svc: [] } })).toEqual([
      'platform.svc.constructor',
      'platform.svc.toString',
    ]);
  });

  it('fs: a granted folder covers itself and what is under it, not its siblings', () => {
    const grant: PermissionSpec = { fs: { read: ['data'], write: ['out/logs'] } };
    const cases: Array<[PermissionSpec, string[]]> = [
      [{ fs: { read: ['data'] } }, []],
      [{ fs: { read: ['data/sub'] } }, []],
      [{ fs: { read: ['./data/sub/'] } }, []],
      [{ fs: { read: ['data/'] } }, []],
      [{ fs: { read: ['database'] } }, ['fs.read:database']],
      [{ fs: { read: ['dat'] } }, ['fs.read:dat']],
      [{ fs: { read: ['data/../secret'] } }, ['fs.read:data/../secret']],
      [{ fs: { read: ['data/sub/../../secret'] } }, ['fs.read:data/sub/../../secret']],
      [{ fs: { read: ['data/sub/../other'] } }, []],
      // Write implies read.
      [{ fs: { read: ['out/logs/today'] } }, []],
      [{ fs: { write: ['out/logs'] } }, []],
      [{ fs: { write: ['out'] } }, ['fs.write:out']],
      [{ fs: { write: ['data'] } }, ['fs.write:data']],
      [{ fs: { write: ['out/logs-old'] } }, ['fs.write:out/logs-old']],
    ];
    for (const [need, missing] of cases) expect(missingPermissions(need, grant), JSON.stringify(need)).toEqual(missing);
  });

  it('fs: "." grants the whole plugin folder, but never a path that leaves it', () => {
    const all: PermissionSpec = { fs: { read: ['.'], write: ['./'] } };
    expect(missingPermissions({ fs: { read: ['a/b/c'], write: ['x'] } }, all)).toEqual([]);
    // A need that escapes cannot come out of a validated manifest, but the check must hold on its own.
    expect(missingPermissions({ fs: { read: ['../outside'], write: ['a/../../outside'] } }, all)).toEqual([
      'fs.read:../outside',
      'fs.write:a/../../outside',
    ]);
    expect(missingPermissions({ fs: { read: ['..'] } }, all)).toEqual(['fs.read:..']);
    expect(missingPermissions({ fs: { read: ['/etc'] } }, all)).toEqual(['fs.read:/etc']);
  });

  it('env, network and childProcess', () => {
    expect(missingPermissions({ env: ['HOME', 'TOKEN'] }, { env: ['HOME'] })).toEqual(['env:TOKEN']);
    expect(missingPermissions({ env: ['HOME'] }, { env: ['home'] })).toEqual(['env:HOME']);
    expect(missingPermissions({ network: true, childProcess: true }, {})).toEqual(['network', 'childProcess']);
    expect(missingPermissions({ network: true, childProcess: true }, { network: true, childProcess: true })).toEqual([]);
    expect(missingPermissions({ network: false, childProcess: false }, {})).toEqual([]);
  });
});

describe('assertGranted', () => {
  it('passes silently when everything is granted', () => {
    expect(() => assertGranted({ network: true }, { network: true }, subject)).not.toThrow();
  });

  it('throws PermissionDeniedError naming the handler, the plugin and every missing resource', () => {
    let error: unknown;
    try {
      assertGranted({ platform: { cache: ['set'] }, env: ['TOKEN'], network: true }, { platform: { cache: ['get'] } }, subject);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PermissionDeniedError);
    const denied = error as PermissionDeniedError;
    expect(denied.code).toBe('PERMISSION_DENIED');
    expect(denied.message).toContain('"run"');
    expect(denied.message).toContain('"@t/plugin"');
    for (const resource of ['platform.cache.set', 'env:TOKEN', 'network']) expect(denied.message).toContain(resource);
    expect(denied.details).toEqual({ ...subject, missing: ['platform.cache.set', 'env:TOKEN', 'network'], phase: 'preflight' });
  });
});

describe('permissionSpecSchema', () => {
  it.each([
    [{ platform: { __proto__: null, constructor: true } }, 'platform'],
    [{ platform: { 'bad name': true } }, 'platform'],
    [{ platform: { cache: ['prototype'] } }, 'platform.cache[0]'],
    [{ fs: { read: ['../x'] } }, 'fs.read[0]'],
    [{ fs: { write: ['/abs'] } }, 'fs.write[0]'],
    [{ fs: { write: ['C:\\abs'] } }, 'fs.write[0]'],
    [{ fs: { read: ['a\0b'] } }, 'fs.read[0]'],
    [{ fs: { read: [''] } }, 'fs.read[0]'],
    [{ env: ['1BAD'] }, 'env[0]'],
    [{ network: 'yes' }, 'network'],
    [{ unknown: true }, '(root)'],
  ])('refuses %o naming %s', (spec, where) => {
    expect(() => parseWith(permissionSpecSchema(), spec, 'perm')).toThrow(ValidationError);
    try {
      parseWith(permissionSpecSchema(), spec, 'perm');
    } catch (error) {
      expect((error as Error).message).toContain(`- ${where}`);
    }
  });
});

describe('allowsPlatformCall (least privilege: the need, not the grant)', () => {
  it('allows declared services and methods only', () => {
    const need: PermissionSpec = { platform: { cache: ['get'], logger: true } };
    expect(allowsPlatformCall(need, 'cache', 'get')).toBe(true);
    expect(allowsPlatformCall(need, 'cache', 'set')).toBe(false);
    expect(allowsPlatformCall(need, 'logger', 'anything')).toBe(true);
    expect(allowsPlatformCall(need, 'storage', 'get')).toBe(false);
    expect(allowsPlatformCall({}, 'cache', 'get')).toBe(false);
    expect(allowsPlatformCall(need, 'toString', 'call')).toBe(false);
    expect(allowsPlatformCall(need, 'cache', 'includes')).toBe(false);
  });
});

class Cache {
  readonly #store = new Map<string, unknown>();
  calls: unknown[][] = [];
  async get(key: string) {
    this.calls.push(['get', key]);
    return this.#store.get(key);
  }
  async set(key: string, value: unknown) {
    this.calls.push(['set', key, value]);
    this.#store.set(key, value);
    return true;
  }
  async fail() {
    throw new RangeError('host failure');
  }
  async fn() {
    return () => 1;
  }
}

function hostPlatform() {
  const cache = new Cache();
  return { cache, platform: { cache, logger: { info: async (m: string) => `logged ${m}` }, notAService: 5 } as Platform };
}

describe('invokePlatform', () => {
  const need: PermissionSpec = { platform: { cache: ['get', 'set', 'fail', 'missing'], logger: true, ghost: true, notAService: true } };

  it('calls a declared method with the service as this', async () => {
    const { platform, cache } = hostPlatform();
    await expect(invokePlatform(platform, need, subject, 'cache', 'set', ['k', { v: 1 }])).resolves.toBe(true);
    await expect(invokePlatform(platform, need, subject, 'cache', 'get', ['k'])).resolves.toEqual({ v: 1 });
    await expect(invokePlatform(platform, need, subject, 'logger', 'info', ['hi'])).resolves.toBe('logged hi');
    expect(cache.calls).toEqual([
      ['set', 'k', { v: 1 }],
      ['get', 'k'],
    ]);
  });

  it('denies an undeclared method or service, naming service and method, without calling the host', async () => {
    const { platform, cache } = hostPlatform();
    const narrow: PermissionSpec = { platform: { cache: ['get'] } };
    for (const [service, method] of [
      ['cache', 'set'],
      ['storage', 'put'],
    ] as const) {
      const error = await invokePlatform(platform, narrow, subject, service, method, ['k', 1]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect((error as PermissionDeniedError).message).toContain(`platform.${service}.${method}`);
      expect((error as PermissionDeniedError).details).toMatchObject({ ...subject, service, method, resource: `platform.${service}.${method}`, phase: 'platform' });
    }
    expect(cache.calls).toEqual([]);
  });

  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'prototype'])(
    'refuses %s as method or service even when the whole service is declared',
    async (name) => {
      const { platform } = hostPlatform();
      const all: PermissionSpec = { platform: { cache: true, [name]: true } };
      for (const [service, method] of [
        ['cache', name],
        [name, 'call'],
      ]) {
        const error = await invokePlatform(platform, all, subject, service!, method!, []).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(PermissionDeniedError);
        expect((error as Error).message).toContain(`platform.${service}.${method}`);
        expect((error as PermissionDeniedError).details.phase).toBe('platform');
      }
    },
  );

  it('refuses non-string service or method names', async () => {
    const { platform } = hostPlatform();
    for (const [service, method] of [
      [Symbol('s'), 'get'],
      ['cache', 42],
    ]) {
      await expect(invokePlatform(platform, need, subject, service as string, method as string, [])).rejects.toBeInstanceOf(PermissionDeniedError);
    }
  });

  it("gives InternalError when the host lacks a declared service or method: the host's setup, not the caller's request", async () => {
    const { platform } = hostPlatform();
    for (const [service, method] of [
      ['cache', 'missing'],
      ['ghost', 'x'],
      ['notAService', 'x'],
    ] as const) {
      const error = await invokePlatform(platform, need, subject, service, method, []).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InternalError);
      expect((error as Error).message).toContain(`${service}.${method}`);
    }
    await expect(invokePlatform(undefined, need, subject, 'cache', 'get', [])).rejects.toBeInstanceOf(InternalError);
    // A service only inherited by the platform object is not the host's.
    const inherited = Object.create({ cache: new Cache() }) as Platform;
    await expect(invokePlatform(inherited, need, subject, 'cache', 'get', [])).rejects.toBeInstanceOf(InternalError);
  });

  it("gives ValidationError for a method the host's service does not have, called under a declaration of the whole service: the handler's own choice of method, not the host's setup", async () => {
    const { platform } = hostPlatform();
    for (const method of ['nope', 'call', 'bind']) {
      const error = await invokePlatform(platform, need, subject, 'logger', method, []).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toBe(`platform.logger.${method} is not a method of the host's logger service (called by handler "run" of plugin "@t/plugin")`);
      expect((error as ValidationError).details).toMatchObject({ ...subject, service: 'logger', method, reason: 'no-such-method' });
    }
  });

  it('takes a function with methods of its own as a service (a knex instance): its methods are called, a missing one is no-such-method, its built-ins are refused', async () => {
    const db = Object.assign(function db() {
      return 'called the function itself';
    }, { async select(table: string) { return `rows of ${table}`; } });
    const platform = { db } as unknown as Platform;
    const whole: PermissionSpec = { platform: { db: true } };
    await expect(invokePlatform(platform, whole, subject, 'db', 'select', ['t'])).resolves.toBe('rows of t');
    await expect(invokePlatform(platform, whole, subject, 'db', 'nope', [])).rejects.toBeInstanceOf(ValidationError);
    for (const method of ['call', 'apply', 'bind', 'toString', 'caller', 'arguments', 'prototype']) {
      await expect(invokePlatform(platform, whole, subject, 'db', method, [])).rejects.toBeInstanceOf(PermissionDeniedError);
    }
    expect(unprovidedPlatformMethods([{ id: '@t/plugin', manifest: { handlers: { run: { permissions: { platform: { db: ['select'] } } } } } } as never], platform, whole)).toEqual([]);
  });

  it('refuses arguments that are not an array', async () => {
    const { platform } = hostPlatform();
    await expect(invokePlatform(platform, need, subject, 'cache', 'get', 'k' as unknown as unknown[])).rejects.toBeInstanceOf(ValidationError);
  });

  it('passes the host’s own error through', async () => {
    const { platform } = hostPlatform();
    const error = await invokePlatform(platform, need, subject, 'cache', 'fail', []).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toBe('host failure');
  });

  it('passes a service up to 10,000 arguments and refuses one more, naming the limit', async () => {
    const platform = { kv: { count: (...values: unknown[]) => values.length } } as unknown as Platform;
    const whole: PermissionSpec = { platform: { kv: true } };
    await expect(invokePlatform(platform, whole, subject, 'kv', 'count', new Array(10_000).fill(0))).resolves.toBe(10_000);
    const error = await invokePlatform(platform, whole, subject, 'kv', 'count', new Array(10_001).fill(0)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).details).toMatchObject({ reason: 'too-many-arguments', limit: 10_000 });
  });
});

describe('unprovidedPlatformMethods (health)', () => {
  const plugin = (platform: PermissionSpec['platform']) => [{ id: '@t/plugin', manifest: { handlers: { run: { permissions: { platform } } } } }] as never;

  it('names a service declared and granted whole that the platform option does not have', () => {
    const platform = { kv: { get: () => 1 } } as unknown as Platform;
    expect(unprovidedPlatformMethods(plugin({ db: true }), platform, { platform: { db: true } })).toEqual([
      expect.stringMatching(/^plugin @t\/plugin declares platform\.db, which the backend's permissions grant but its platform option does not have/),
    ]);
  });

  it("says a method whose getter throws once, as unreadable, not also as missing", () => {
    const kv = {
      get get(): never {
        throw new Error('not connected');
      },
    };
    const problems = unprovidedPlatformMethods(plugin({ kv: ['get'] }), { kv } as unknown as Platform, { platform: { kv: true } });
    expect(problems).toEqual([expect.stringMatching(/^plugin @t\/plugin declares platform\.kv\.get \(not connected\), whose getter on the backend's platform option throws/)]);
  });
});

describe('createPlatformProxy', () => {
  it('routes every call to one function and turns its synchronous throw into a rejection', async () => {
    const seen: unknown[] = [];
    const proxy = createPlatformProxy((service, method, args) => {
      seen.push([service, method, args]);
      if (method === 'boom') throw new Error('sync');
      return Promise.resolve(`${service}.${method}`);
    }) as Record<string, Record<string, (...a: unknown[]) => Promise<unknown>>>;
    await expect(proxy.a!.b!(1, 2)).resolves.toBe('a.b');
    await expect(proxy.a!.boom!()).rejects.toThrow('sync');
    expect(proxy.a).toBe(proxy.a);
    expect(proxy.a!.b).toBe(proxy.a!.b);
    expect(seen).toEqual([
      ['a', 'b', [1, 2]],
      ['a', 'boom', []],
    ]);
  });
});

describe('host services with method names that shadow built-ins', () => {
  it('allows a declared method the host defined itself (call, toString), refuses inherited built-ins', async () => {
    const platform: Platform = {
      rpc: {
        async call(name: string) {
          return `called ${name}`;
        },
        async toString() {
          return 'custom';
        },
      },
      plain: {},
    };
    const declared: PermissionSpec = { platform: { rpc: ['call', 'toString'], plain: ['toString', 'hasOwnProperty', 'call'] } };
    const who = { pluginId: '@a/b', handlerId: 'h' };
    await expect(invokePlatform(platform, declared, who, 'rpc', 'call', ['x'])).resolves.toBe('called x');
    await expect(invokePlatform(platform, declared, who, 'rpc', 'toString', [])).resolves.toBe('custom');
    for (const method of ['toString', 'hasOwnProperty']) {
      await expect(invokePlatform(platform, declared, who, 'plain', method, [])).rejects.toBeInstanceOf(PermissionDeniedError);
    }
    await expect(invokePlatform(platform, declared, who, 'plain', 'call', [])).rejects.toBeInstanceOf(InternalError);
  });
});

describe('a process whose Object.prototype has an enumerable key added (a library\'s Object.prototype.x = …)', () => {
  it('is told that this is why no schema can be built (zod takes the key for its own), naming the key, not a TypeError from inside zod', () => {
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `Object.prototype.addedByALibrary = 1;
const { permissionSpecSchema } = await import(${JSON.stringify(entry)});
try { permissionSpecSchema(); console.log('built'); } catch (error) { console.log(error.message); console.log(\`cause: \${error.cause?.name}: \${error.cause?.message}\`); }`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.stderr).toBe('');
    // Before: "Cannot read properties of undefined (reading 'get')", thrown from zod's util.js.
    expect(run.stdout).toMatch(/^zod, which validates options and requests, cannot build its schemas in a process whose Object\.prototype has enumerable keys added to it \("addedByALibrary", by the host or a library it loads: Object\.prototype\.x = …\): define them with Object\.defineProperty \(not enumerable\), or remove them \(.+\)\ncause: /);
    // zod's own TypeError stays the cause (its stack shows where in zod), the message it quotes.
    const [said, cause] = run.stdout.split('\n');
    const causeMessage = /^cause: TypeError: (.+)$/.exec(cause!)?.[1];
    expect(causeMessage).toBeDefined();
    expect(said!.endsWith(`(${causeMessage})`)).toBe(true);
  });
});
