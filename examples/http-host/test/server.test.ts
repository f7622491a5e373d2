import { BASIC, GUARDED, HOSTILE, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildServer } from '../server.mjs';

// Real HTTP requests to a real fastify server on loopback, a real backend behind it.
let app: ReturnType<typeof buildServer>;
let backend: ReturnType<typeof createExecutionBackend>;
let url: string;
/** What the server logged, one parsed JSON line each (Fastify's logger, written here rather than to stdout). */
const logged: any[] = [];
const logStream = new Writable({
  write(chunk, _encoding, callback) {
    for (const line of String(chunk).split('\n').filter(Boolean)) logged.push(JSON.parse(line));
    callback();
  },
});

beforeAll(async () => {
  backend = createExecutionBackend({ type: 'worker-pool', maxThreads: 2, plugins: [fixturePlugins.basic, fixturePlugins.guarded], workspace: false });
  app = buildServer(backend, { logger: { stream: logStream } });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
});

async function post(body: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${url}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, json: await response.json() };
}

it('200 with the data and meta of a successful execution', async () => {
  const { status, json } = await post({ pluginId: BASIC, handlerId: 'echo', input: { hello: 'http' } });
  expect(status).toBe(200);
  expect(json).toMatchObject({ data: { hello: 'http' }, meta: { backend: 'worker-pool', handlerId: 'echo' } });
});

it('the error code as the HTTP status: 404, 400, 403, 500, 504', async () => {
  const cases: Array<[unknown, number, string]> = [
    [{ pluginId: BASIC, handlerId: 'no-such-handler' }, 404, 'HANDLER_NOT_FOUND'],
    [{ pluginId: BASIC }, 400, 'VALIDATION_ERROR'],
    [{ pluginId: GUARDED, handlerId: 'needs-kv' }, 403, 'PERMISSION_DENIED'],
    [{ pluginId: BASIC, handlerId: 'throws' }, 500, 'HANDLER_ERROR'],
    [{ pluginId: BASIC, handlerId: 'never-resolves', timeoutMs: 100 }, 504, 'TIMEOUT'],
  ];
  for (const [body, status, code] of cases) {
    const response = await post(body);
    expect(response.status, code).toBe(status);
    expect(response.json).toMatchObject({ code });
  }
  // A message that can name the server's paths, or say what the handler threw, stays on the server.
  const threw = await post({ pluginId: BASIC, handlerId: 'throws' });
  expect(threw.json).toMatchObject({ code: 'HANDLER_ERROR', message: expect.stringMatching(/^The execution failed \(HANDLER_ERROR\); see the server's log for \S+$/) });
  const missing = await post({ pluginId: BASIC, handlerId: 'missing-module' });
  expect(missing.status).toBe(404);
  expect(missing.json).toMatchObject({ code: 'HANDLER_NOT_FOUND', message: expect.stringMatching(/^The execution failed \(HANDLER_NOT_FOUND\); see the server's log for \S+$/) });
  // ...and the server's log has it, under the execution id the client was given.
  for (const response of [threw, missing]) {
    const entry = logged.find((line) => line.executionId === response.json.executionId);
    expect(entry, response.json.code).toMatchObject({ level: 50, msg: 'execution failed', err: { code: response.json.code } });
  }
  expect(logged.find((line) => line.executionId === threw.json.executionId).err.message).toMatch(/^quota exceeded/);
});

it('health: 200 while the backend is healthy', async () => {
  const response = await fetch(`${url}/health`);
  expect(response.status).toBe(200);
  expect(await response.json()).toMatchObject({ ok: true, backend: 'worker-pool' });
});

it('a client that goes away aborts its execution (ABORTED, which a host would log as 499)', async () => {
  const before = (await backend.stats()).byOutcome.ABORTED ?? 0;
  const client = new AbortController();
  const request = fetch(`${url}/execute`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pluginId: BASIC, handlerId: 'never-resolves', timeoutMs: 20_000 }),
    signal: client.signal,
  }).catch((error: unknown) => error);
  await waitFor(async () => (await backend.stats()).active === 1);
  client.abort();
  await request;
  await waitFor(async () => ((await backend.stats()).byOutcome.ABORTED ?? 0) === before + 1);
  expect((await backend.stats()).active).toBe(0);
});

it('close (SIGTERM): a request in flight gets its answer, one still queued 503, before connections close', async () => {
  const ownBackend = createExecutionBackend({ type: 'worker-pool', maxThreads: 1, plugins: [fixturePlugins.basic], workspace: false });
  const ownApp = buildServer(ownBackend, { logger: false });
  const ownUrl = await ownApp.listen({ port: 0, host: '127.0.0.1' });
  const send = (body: unknown) =>
    fetch(`${ownUrl}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
      async (response) => ({ status: response.status, json: await response.json() }),
      (error: unknown) => ({ status: 0, json: String((error as Error).cause ?? error) }),
    );
  const running = send({ pluginId: BASIC, handlerId: 'slow', input: { ms: 500 } });
  await waitFor(async () => (await ownBackend.stats()).active === 1);
  const queued = send({ pluginId: BASIC, handlerId: 'echo', input: {} });
  await waitFor(async () => (await ownBackend.stats()).queued === 1);
  // A connection that never sends a request (a load balancer's spare one) does not hold the close up.
  const silent = net.connect(new URL(ownUrl).port, '127.0.0.1');
  await once(silent, 'connect');
  await ownApp.close();
  expect(silent.destroyed || (await once(silent, 'close'), true)).toBe(true);
  expect(await running).toMatchObject({ status: 200, json: { data: { waited: 500 } } });
  expect(await queued).toMatchObject({ status: 503, json: { code: 'SHUTTING_DOWN' } });
  expect((await ownBackend.health()).state).not.toBe('ready');
});

it('a client sending its request a byte at a time is cut off (408), not held for ever (slowloris)', async () => {
  // The default: a whole request within a bounded time (Fastify's own default is no limit).
  expect(app.server.requestTimeout).toBeGreaterThan(0);
  expect(app.server.requestTimeout).toBeLessThanOrEqual(60_000);
  expect(app.server.headersTimeout).toBeLessThanOrEqual(app.server.requestTimeout);
  // The same limit, shortened here (and checked more often than Node's 30 s) to see it answer.
  const ownBackend = createExecutionBackend({ type: 'worker-pool', maxThreads: 1, plugins: [fixturePlugins.basic], workspace: false });
  const ownApp = buildServer(ownBackend, { logger: false, requestTimeout: 300, http: { connectionsCheckingInterval: 50 } });
  const ownUrl = new URL(await ownApp.listen({ port: 0, host: '127.0.0.1' }));
  const slow = net.connect(Number(ownUrl.port), '127.0.0.1').on('error', () => undefined);
  await once(slow, 'connect');
  slow.write('POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
  const dribble = setInterval(() => slow.write(' '), 50);
  let answer = '';
  slow.on('data', (chunk) => (answer += chunk));
  await once(slow, 'close');
  clearInterval(dribble);
  expect(answer).toMatch(/^HTTP\/1\.1 408/);
  await ownApp.close();
});

it('a full queue is 429 QUEUE_FULL with Retry-After, so that a client tries again shortly', async () => {
  const ownBackend = createExecutionBackend({ type: 'worker-pool', maxThreads: 1, maxQueue: 0, plugins: [fixturePlugins.basic], workspace: false });
  const ownApp = buildServer(ownBackend, { logger: false });
  const ownUrl = await ownApp.listen({ port: 0, host: '127.0.0.1' });
  try {
    const send = (body: unknown) => fetch(`${ownUrl}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const running = send({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } });
    await waitFor(async () => (await ownBackend.stats()).active === 1);
    const refused = await send({ pluginId: BASIC, handlerId: 'echo', input: {} });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ code: 'QUEUE_FULL' });
    expect((await running).status).toBe(200);
  } finally {
    await ownApp.close();
  }
});

it('a client that goes away before the handler starts (during an async auth hook) has its execution aborted too', async () => {
  const ownBackend = createExecutionBackend({ type: 'worker-pool', maxThreads: 1, plugins: [fixturePlugins.basic], workspace: false });
  const ownApp = buildServer(ownBackend, { logger: false });
  // A host's own check before the route's handler (an auth lookup), still running when the client leaves.
  let checking = false;
  ownApp.addHook('preHandler', async (_request, reply) => {
    checking = true;
    if (!reply.raw.destroyed) await once(reply.raw, 'close');
  });
  const ownUrl = await ownApp.listen({ port: 0, host: '127.0.0.1' });
  try {
    const client = new AbortController();
    const request = fetch(`${ownUrl}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pluginId: BASIC, handlerId: 'never-resolves', timeoutMs: 20_000 }),
      signal: client.signal,
    }).catch((error: unknown) => error);
    await waitFor(() => checking);
    client.abort();
    await request;
    await waitFor(async () => ((await ownBackend.stats()).byOutcome.ABORTED ?? 0) === 1);
    expect((await ownBackend.stats()).active).toBe(0);
  } finally {
    await ownApp.close();
  }
});

it('a timeoutMs the client sends is clamped to the host\'s limit, not passed on as it is (a request\'s overrides the manifest\'s)', async () => {
  const { status, json } = await post({ pluginId: BASIC, handlerId: 'echo', input: {}, timeoutMs: 2_000_000_000 });
  expect(status).toBe(200);
  expect(json.meta.timeoutMs).toBeLessThanOrEqual(60_000);
});

it('a result JSON cannot write (a BigInt, a cycle: the backend carries both) is answered as the handler\'s failure, its message on the server', async () => {
  const ownBackend = createExecutionBackend({ type: 'worker-pool', maxThreads: 1, plugins: [fixturePlugins.hostile], workspace: false });
  const ownLogged: any[] = [];
  const ownLog = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) ownLogged.push(JSON.parse(line));
      callback();
    },
  });
  const ownApp = buildServer(ownBackend, { logger: { stream: ownLog } });
  const ownUrl = await ownApp.listen({ port: 0, host: '127.0.0.1' });
  try {
    for (const kind of ['bigint', 'circular']) {
      const body = JSON.stringify({ pluginId: HOSTILE, handlerId: 'return-value', input: { kind } });
      const response = await fetch(`${ownUrl}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const json = await response.json();
      expect(response.status, kind).toBe(500);
      expect(json, kind).toMatchObject({ code: 'HANDLER_ERROR', message: expect.stringMatching(/^The execution failed \(HANDLER_ERROR\); see the server's log for \S+$/) });
      expect(ownLogged.find((line) => line.executionId === json.executionId), kind).toMatchObject({ level: 50, err: { type: 'TypeError' } });
    }
  } finally {
    await ownApp.close();
  }
});
