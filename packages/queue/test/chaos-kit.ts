/**
 * What the chaos tests share (chaos-*.test.ts): the package's nats-server, a markers folder, and
 * hosts, servers and workers that are stopped after each test, newest first. A test file calls
 * `useChaosKit()` once at its top level; `server` and `markers` are set before its first test.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectError, fixturePlugins, holdEventLoop } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { QueueBackend, type QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { startNatsServer, type StartNatsServerOptions } from '../../../scripts/nats-server.mjs';
import { QUEUE_PLUGIN, QUEUE_PROBE, natsServer, startWorker, type WorkerProcess } from './helpers.js';

/** The bound for a lost worker, with the default heartbeats: WORKER_CRASHED within 5 s. */
export const LOST_WITHIN_MS = 5000;
/** Slack for a shared, loaded CI machine on top of a stated bound. */
export const SLACK_MS = 3000;
/** Longer than the stream's ack wait: a redelivery, if there were one, would have happened. */
export const REDELIVERY_WINDOW_MS = 6500;

export let server: { url: string; stop(): Promise<void> };
export let markers: string;
const cleanups: Array<() => Promise<unknown>> = [];

/** Hosts and workers of the test, stopped newest first (before a describe's proxy closes: through a closed proxy a worker's stop waits for its reconnection). */
export async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}

export function useChaosKit(): void {
  beforeAll(async () => {
    server = await natsServer();
    markers = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-chaos-'));
  });
  afterEach(cleanUp);
  afterAll(async () => {
    await server?.stop();
    await rm(markers, { recursive: true, force: true });
  });
}

export function host(natsUrl: string, pool: string, options: QueueBackendOptions = {}): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: natsUrl }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], workspace: false, ...options });
  cleanups.push(() => backend.shutdown({ timeoutMs: 3000 }));
  return backend;
}

/** A nats-server of the test's own (it restarts or stops it), stopped after the test. */
export async function ownServer(options?: StartNatsServerOptions) {
  const own = await startNatsServer(options);
  cleanups.push(() => own.stop());
  return own;
}

export async function worker(natsUrl: string, pool: string, concurrency = 1, backend = 'worker-pool'): Promise<WorkerProcess> {
  const started = await startWorker({ natsUrl, pool, backend, concurrency, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
  cleanups.push(async () => {
    if (started.child.signalCode === null && started.child.exitCode === null) started.child.kill('SIGCONT');
    await started.stop();
  });
  return started;
}

/** Something else the test started, stopped with its hosts and workers. */
export function stopAfterTest(stop: () => Promise<unknown>): void {
  cleanups.push(stop);
}

export async function marks(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

/** Send a `mark` that runs until stopped (or for `ms`); resolves once its handler has started on a worker. */
export async function startMark(backend: QueueBackend, file: string, ms?: number): Promise<{ result: Promise<ExecutionResult> }> {
  let running!: () => void;
  const started = new Promise<void>((resolve) => (running = resolve));
  const input = ms === undefined ? { file } : { file, ms };
  const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input }, { timeoutMs: 120_000, onEvent: () => running() });
  await Promise.race([started, result.then((r) => Promise.reject(new Error(`ended before it started: ${JSON.stringify(r)}`)))]);
  return { result };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Block this host's event loop for 5 s (past workerLostMs): its worker stops `result`'s execution, and the caller, which never aborted, gets WORKER_CRASHED (runner-lost). */
export async function expectStoppedForSilence(result: Promise<ExecutionResult>): Promise<void> {
  holdEventLoop(5000);
  const outcome = await result;
  expectError(outcome, 'WORKER_CRASHED');
  expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
  expect(outcome.error.message).toMatch(/stopped on worker \S+: its caller has not answered heartbeats for \d+ ms/);
}

/**
 * A process that embeds a host or a worker (`fixtures/<fixture>`, given `args`) and closes it when
 * a line comes on its standard input: what it says (stdout and stderr), and its exit code once it
 * ends by itself. Nothing but what it embeds keeps it up.
 */
export function embeddingProcess(fixture: string, args: string[]): { child: ChildProcessWithoutNullStreams; said: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', fixture), ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, said: () => output, exited };
}
