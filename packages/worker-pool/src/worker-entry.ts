/**
 * The thread side of the worker pool: piscina loads this module once per thread and calls its
 * default export once per execution. It runs core's RunnerSession (the one runner-side protocol
 * endpoint) and keeps the thread clean enough to hand to the next plugin.
 *
 * Imports only core's runner entry: the main entry builds zod schemas at load time, which would
 * add tens of milliseconds to every thread start (and a replacement thread starts after every
 * crash or timeout).
 */
import { MessageChannel, parentPort, threadId, workerData, type MessagePort } from 'node:worker_threads';
import { RunnerSession, serializeError, unserializableError, type RunnerResult } from '@kb-labs/plugin-execution-core/runner';
import { plainlyCloneable } from './cloneable.js';
import { OutputTap } from './output-tap.js';
import { EnvGate, HandleWatch, captureIntrinsics, pristinePost, retireReason } from './thread-hygiene.js';
import type { CrashReport, HostToThread, ThreadAck, ThreadConfig, ThreadHello, ThreadTask, ThreadToHost } from './thread-protocol.js';

// First, before any plugin code can run on this thread.
const guard = captureIntrinsics();
const handles = new HandleWatch();
const env = new EnvGate(process.env);
const config = (workerData ?? { maxExecutions: 0, maxOutputPerStream: 1_000_000, maxLogLineLength: 16_384 }) as ThreadConfig;
const output = new OutputTap(config);
const listenerCount = process.listenerCount.bind(process);

const { port1: channel, port2 } = new MessageChannel();
const send = (message: ThreadToHost): void => pristinePost(channel, message);

let current: { k: number; session: RunnerSession } | undefined;
let executions = 0;

/** A cancel that arrived before its execution did (they travel on different ports). */
let earlyCancel: HostToThread | undefined;

channel.on('message', (message: HostToThread) => {
  if (current && message.k === current.k) current.session.handle(message.m);
  else if (message.m.type === 'cancel') earlyCancel = message;
});

// The host learns from this why the thread is going, and whether an execution was running on it.
// A handler that installed its own 'uncaughtException' listener keeps the thread alive: no report.
process.on('uncaughtExceptionMonitor', (error, origin) => {
  if (listenerCount('uncaughtException') > 0) return;
  report({ k: current?.k ?? -1, reason: origin === 'unhandledRejection' ? 'unhandled-rejection' : 'uncaught-exception', error: serializeError(error) });
});
process.on('exit', (exitCode) => report({ k: current?.k ?? -1, reason: 'exit', exitCode }));

function report(crash: CrashReport): void {
  try {
    send({ crash });
  } catch {
    // The channel is already gone; the host still sees the thread exit.
  }
}

const hello: ThreadHello = { kbWorkerPool: 'hello', threadId, port: port2 as MessagePort };
parentPort!.postMessage(hello, [port2]);

/** One execution. Resolves once its result is on its way; never rejects. */
export default async function runExecution({ k, task }: ThreadTask): Promise<ThreadAck> {
  handles.mark();
  env.apply(process.env, task.permissions?.env);
  let sent = 0;
  const session = new RunnerSession(task, (m) => {
    send({ k, m } as ThreadToHost);
    sent++;
  });
  current = { k, session };
  if (earlyCancel?.k === k) session.handle(earlyCancel.m);
  earlyCancel = undefined;
  output.begin((out, lines) => {
    send({ k, out, lines });
    sent++;
  });
  let result: RunnerResult;
  try {
    result = await session.run();
  } finally {
    output.end();
    current = undefined;
  }
  executions++;
  const retire = retireReason(guard, handles, executions, config.maxExecutions);
  if (!retire && plainlyCloneable(result)) return { n: sent, r: result };
  try {
    send(retire ? { k, m: result, retire } : { k, m: result });
  } catch (error) {
    // The handler returned something structured clone refuses (a function, a symbol …).
    const refused: RunnerResult = { type: 'result', ok: false, error: serializeError(unserializableError('The handler result', error)) };
    send(retire ? { k, m: refused, retire } : { k, m: refused });
  }
  if (retire) {
    // Never tell piscina this thread is free: the host terminates it as soon as it reads the
    // result (piscina then starts a replacement).
    return new Promise<never>(() => {});
  }
  return { n: sent };
}
