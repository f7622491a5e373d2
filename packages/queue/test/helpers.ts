import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import { expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionEvent, IExecutionBackend, LogEntry, PluginSource } from '@kb-labs/plugin-execution-core';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, inject } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const WORKER_SCRIPT = path.join(here, 'fixtures', 'worker.mjs');
export const QUEUE_PLUGIN = path.join(here, 'fixtures', 'plugins', 'queue-probe');
export const QUEUE_PROBE = '@queue/probe';

/** The plugins every test worker loads. */
export const WORKER_PLUGINS: PluginSource[] = [fixturePlugins.basic, fixturePlugins.hostile, fixturePlugins.guarded, fixturePlugins.cjs, QUEUE_PLUGIN];

/** A fresh pool name: each test file's workers and backends meet only each other. */
export const newPool = (name: string): string => `${name}-${randomBytes(4).toString('hex')}`;

/** The headers a worker's message to its caller has: `kind` about execution `id` (a test playing a worker, or a peer forging one). */
export function asWorker(kind: string, id: string): ReturnType<typeof headers> {
  const h = headers();
  h.set('Kb-Kind', kind);
  h.set('Kb-Exec-Id', id);
  return h;
}

/** The first task in `stream`, once it is there: the subject its host takes a worker's messages on (`caller`), and the task's id. */
export async function firstTask(jsm: JetStreamManager, stream: string): Promise<{ caller: string; taskId: string }> {
  await waitFor(async () => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages === 1, 10_000);
  const task = (await jsm.streams.getMessage(stream, { seq: 1 }))!;
  return { caller: task.header.get('Kb-Reply'), taskId: task.header.get('Nats-Msg-Id') };
}

/** A worker's `started` for task `taskId` of execution `executionId`, sent to its host as a worker sends it: the host's answer. */
export async function startedAs(nc: NatsConnection, caller: string, worker: { id: string; host: string; pid: number }, taskId: string, executionId: string): Promise<unknown> {
  const answer = await nc.request(caller, v8.serialize({ worker, task: taskId }), { headers: asWorker('started', executionId), timeout: 5000 });
  return v8.deserialize(answer.data);
}

interface NatsServerHandle {
  url: string;
  stop(): Promise<void>;
}

/**
 * The NATS server of the tests: the package's global setup provides its URL; without one (a
 * single file run by hand), a server of our own. A missing nats-server binary fails, never skips.
 */
export async function natsServer(): Promise<NatsServerHandle> {
  const provided = inject('natsUrl') as string | undefined;
  if (provided) return { url: provided, stop: async () => {} };
  const script = path.resolve(here, '../../../scripts/nats-server.mjs');
  const { startNatsServer } = (await import(script)) as { startNatsServer: (o?: { maxPayload?: string }) => Promise<NatsServerHandle> };
  return startNatsServer({ maxPayload: '8MB' });
}

/**
 * The tests' NATS server and a connection to it for each name, made before the file's (or describe
 * block's) tests and closed after: `serverConnections('sender', 'receiver').sender`.
 */
export function serverConnections<Name extends string>(...names: Name[]): Record<Name, NatsConnection> {
  const links = {} as Record<Name, NatsConnection>;
  let server: NatsServerHandle | undefined;
  beforeAll(async () => {
    server = await natsServer();
    for (const name of names) links[name] = await connect({ servers: server.url });
  });
  afterAll(async () => {
    for (const name of names) await links[name]?.close();
    await server?.stop();
  });
  return links;
}

/** The tests' server, a connection to it and that connection's JetStream manager. */
export interface TestServer {
  url: string;
  nc: NatsConnection;
  jsm: JetStreamManager;
}

/**
 * The tests' server with one connection (a peer's, or the one a test makes streams by hand with)
 * and its JetStream manager, filled in before a file's (or describe block's) tests and closed
 * after: `const nats = testServer();` then `nats.url`, `nats.nc`, `nats.jsm` inside the tests.
 */
export function testServer(): TestServer {
  const shared = {} as TestServer;
  let server: NatsServerHandle | undefined;
  beforeAll(async () => {
    server = await natsServer();
    shared.url = server.url;
    shared.nc = await connect({ servers: server.url });
    shared.jsm = await jetstreamManager(shared.nc);
  });
  afterAll(async () => {
    await shared.nc?.close();
    await server?.stop();
  });
  return shared;
}

export interface WorkerProcess {
  id: string;
  child: ChildProcess;
  workspaceRoot: string;
  /** Everything it printed, for failure messages. */
  output: () => string;
  /** SIGTERM, then wait for its exit. */
  stop(): Promise<void>;
}

export interface WorkerSpec {
  natsUrl: string;
  pool: string;
  backend?: string;
  backendOptions?: Record<string, unknown>;
  concurrency?: number;
  id?: string;
  /** Its plugins: folders, or `{ root, manifest }` (a folder under another id). */
  plugins?: PluginSource[];
  heartbeatMs?: number;
  /** It writes a view type its hosts cannot read, as a worker on a newer Node would (fixtures/worker.mjs). */
  writesNewerViews?: boolean;
  /** The drain's `timeoutMs` on SIGTERM (the fixture's default: 10 000). */
  drainMs?: number;
  /** How far the worker's wall clock (`Date.now()`) is ahead of the host's (negative: behind), as on a machine whose clock is off. */
  clockOffsetMs?: number;
  /** Register the OpenTelemetry SDK in the worker, its finished spans written to this file (JSON lines). */
  otelSpansFile?: string;
}

/** Start one worker process (explicit env: nothing of the test process leaks in) and wait for "ready". */
export async function startWorker(spec: WorkerSpec): Promise<WorkerProcess> {
  const workspaceRoot = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-worker-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    KB_NATS_URL: spec.natsUrl,
    KB_POOL: spec.pool,
    KB_BACKEND: spec.backend ?? 'worker-pool',
    KB_BACKEND_OPTIONS: JSON.stringify(spec.backendOptions ?? {}),
    KB_PLUGINS: JSON.stringify(spec.plugins ?? WORKER_PLUGINS),
    KB_CONCURRENCY: String(spec.concurrency ?? 4),
    KB_WORKSPACE_ROOT: workspaceRoot,
    ...(spec.id ? { KB_WORKER_ID: spec.id } : {}),
    ...(spec.heartbeatMs ? { KB_HEARTBEAT_MS: String(spec.heartbeatMs) } : {}),
    ...(spec.drainMs !== undefined ? { KB_DRAIN_MS: String(spec.drainMs) } : {}),
    ...(spec.writesNewerViews ? { KB_WRITES_NEWER_VIEWS: '1' } : {}),
    ...(spec.otelSpansFile ? { KB_OTEL_SPANS_FILE: spec.otelSpansFile } : {}),
    ...(spec.clockOffsetMs ? { KB_CLOCK_OFFSET_MS: String(spec.clockOffsetMs) } : {}),
  };
  const child = spawn(process.execPath, [WORKER_SCRIPT], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const id = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start within 45 s:\n${output}`)), 45_000);
    const onData = () => {
      const match = /ready (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before it was ready:\n${output}`));
    });
  });
  return {
    id,
    child,
    workspaceRoot,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await rm(workspaceRoot, { recursive: true, force: true });
    },
  };
}

/** Two workers of `pool`, as the suites run them. */
export async function startWorkers(count: number, spec: WorkerSpec): Promise<WorkerProcess[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => startWorker({ ...spec, ...(spec.id ? { id: `${spec.id}-${i}` } : {}) })));
}

/** Workspace directories the workers still hold (they must hold none once executions are over). */
export async function leftWorkspaces(workers: WorkerProcess[]): Promise<string[]> {
  const left = await Promise.all(workers.map(async (w) => (await readdir(w.workspaceRoot).catch(() => [])).map((name) => path.join(w.workspaceRoot, name))));
  return left.flat();
}

/**
 * Runs `big-event` with an event of `bytes` characters that the caller cannot take: it succeeds,
 * no event arrives, and a `warn` line matching `warning` comes in the event's place, before the
 * line the handler logs after it.
 */
export async function expectEventWarnedInItsPlace(backend: IExecutionBackend, bytes: number, warning: RegExp): Promise<void> {
  const events: ExecutionEvent[] = [];
  const logs: LogEntry[] = [];
  const emitted = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'big-event', input: { bytes } }, { timeoutMs: 60_000, onEvent: (e) => events.push(e), onLog: (l) => logs.push(l) });
  expectOk(emitted);
  expect(events).toEqual([]);
  expect(logs.map((l) => [l.level, l.message])).toEqual([
    ['warn', expect.stringMatching(warning)],
    ['info', 'after the big event'],
  ]);
}
