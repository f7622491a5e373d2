// An HTTP host: POST /execute { pluginId, handlerId, input } runs the handler on a backend and
// answers 200 { data, meta }, or the status httpStatusOf(code) gives with { code, message } (a result
// JSON cannot write, such as a BigInt, is HANDLER_ERROR).
// A client that goes away aborts its execution. `node server.mjs` serves the example plugins.
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { createExecutionBackend, httpStatusOf } from '@kb-labs/plugin-execution';

/**
 * Codes whose message is for the client (what it sent, a limit it met); the rest stay on the
 * server. Not HANDLER_ERROR: its message is what the handler threw (a service's error it passed
 * on included), or why its module did not load, naming its files: add it for plugins whose
 * messages are written for your clients.
 */
const CLIENT_MESSAGES = new Set(['VALIDATION_ERROR', 'PERMISSION_DENIED', 'TIMEOUT', 'QUEUE_FULL', 'ABORTED', 'SHUTTING_DOWN']);

/**
 * The longest time limit a client may ask for: its `timeoutMs` overrides the handler's own (the
 * manifest's), so a longer one would let any client hold a thread for up to Node's longest timer.
 */
const MAX_TIMEOUT_MS = 60_000;

/**
 * The HTTP side, on any backend. `options` go to Fastify (a `logger` of your own, say); the
 * default logs to stdout, where the failed executions' errors go (their clients are sent there).
 */
export function buildServer(backend, options = {}) {
  // On close, every request in flight is answered first (below); then the connections still open
  // are closed, rather than waiting for clients that keep them alive (or never send a request).
  // A request must arrive whole within 30 s: Fastify's default (0) lets a client that sends its
  // body a byte at a time (slowloris) hold a connection, and hold up a close, for ever.
  const app = Fastify({ logger: true, forceCloseConnections: true, requestTimeout: 30_000, ...options });
  // Node checks requestTimeout only while headersTimeout (60 s unless given) is no longer than it;
  // Fastify sets requestTimeout after creating the server, so Node's own clamp does not apply.
  if (app.server.requestTimeout > 0) app.server.headersTimeout = Math.min(app.server.headersTimeout, app.server.requestTimeout);
  /** The responses of the executions in flight, which a close waits for. */
  const answering = new Set();
  app.post('/execute', async (request, reply) => {
    const { pluginId, handlerId, input, timeoutMs } = request.body ?? {};
    const controller = new AbortController();
    answering.add(reply.raw);
    // The connection closed before the answer was written: nobody waits for it any more.
    reply.raw.once('close', () => {
      answering.delete(reply.raw);
      if (!reply.raw.writableFinished) controller.abort();
    });
    // ...or closed already, while a hook before this handler ran (an auth check): its 'close' is past.
    if (reply.raw.destroyed) {
      answering.delete(reply.raw);
      controller.abort();
    }
    // Not a number: passed on as it is, for the backend's VALIDATION_ERROR (400) to say what is wrong.
    const limit = typeof timeoutMs === 'number' ? Math.min(timeoutMs, MAX_TIMEOUT_MS) : timeoutMs;
    const result = await backend.execute({ pluginId, handlerId, input, context: { host: { kind: 'http' } } }, { signal: controller.signal, timeoutMs: limit });
    const { executionId } = result.meta;
    if (!result.ok) return answerFailure(request, reply, result.error.code, result.error, executionId);
    // A result JSON cannot write (a BigInt, a cycle: the backends carry both) is the handler's failure,
    // answered as one, rather than Fastify's 500 telling the client about the handler's data.
    let body;
    try {
      body = JSON.stringify({ data: result.data, meta: result.meta });
    } catch (error) {
      return answerFailure(request, reply, 'HANDLER_ERROR', error, executionId);
    }
    return reply.type('application/json').send(body);
  });
  // Ready while the backend serves: a problem of one plugin (in `problems`, for alerts) does not
  // take the whole host out of a load balancer's rotation.
  app.get('/health', async (_request, reply) => {
    const health = await backend.health();
    return reply.code(health.state === 'ready' ? 200 : 503).send(health);
  });
  // On close (SIGTERM), before any connection is closed: new requests already get 503 from Fastify,
  // and the backend lets what runs finish, stopping what is left at 5 s (SHUTTING_DOWN, 503), so
  // every request in flight gets its answer rather than a connection cut under it.
  app.addHook('preClose', async () => {
    await backend.shutdown({ timeoutMs: 5000 });
    await Promise.all([...answering].map((response) => finished(response).catch(() => undefined)));
  });
  return app;
}

/** The failed execution's answer: its code as the status, and a message only for the codes that are the client's. */
function answerFailure(request, reply, code, error, executionId) {
  // The others' messages can name server paths (a missing module, a crashed child's stderr) or carry what a service said:
  // the client gets the code and a plain message; the host's log keeps the whole error.
  const message = CLIENT_MESSAGES.has(code) ? error.message : `The execution failed (${code}); see the server's log for ${executionId}`;
  if (!CLIENT_MESSAGES.has(code)) request.log.error({ err: error, executionId }, 'execution failed');
  // A full queue passes: a client may try again shortly.
  if (code === 'QUEUE_FULL') reply.header('retry-after', '1');
  return reply.code(httpStatusOf(code)).send({ code, message, executionId });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // The host's kv (in memory here), granted to the plugins that declare it (toolbox's `remember`):
  // a service given in `platform` but never granted would answer every call PERMISSION_DENIED.
  const store = new Map();
  const backend = createExecutionBackend({
    type: 'worker-pool',
    plugins: ['hello', 'toolbox'].map((name) => path.join(here, '..', 'plugins', name)),
    platform: { kv: { get: async (key) => store.get(key) ?? null, set: async (key, value) => void store.set(key, value) } },
    permissions: { platform: { kv: ['get', 'set'] } },
  });
  const app = buildServer(backend);
  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
  console.log(`listening on ${address}: curl -X POST ${address}/execute -H 'content-type: application/json' -d '{"pluginId":"@examples/hello","handlerId":"greet","input":{"name":"Ada"}}'`);
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => void app.close());
}
