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
const config = (workerData ?? { maxExecutions: 0, maxOutputPerStream: 1_000_000, maxLogLineLength: 16_384, spinWaitUs: 0, cores: 1 }) as ThreadConfig;
const output = new OutputTap(config);
const listenerCount = process.listenerCount.bind(process);

const { port1: channel, port2 } = new MessageChannel();
const send = (message: ThreadToHost): void => pristinePost(channel, message);

let current: { k: number; session: RunnerSession } | undefined;
let executions = 0;
/** This thread asked to be retired: it begins nothing more (the host ends it). */
let retiring = false;

/** Executions handed to this thread behind the running one, in order. */
const waiting: Array<{ t: ThreadTask; resolve: (ack: ThreadAck | Promise<ThreadAck>) => void }> = [];

/** The claim cells and the doorbell (see thread-protocol.ts), and the operations on them, taken before plugin code can replace them. */
const claims = new Int32Array(new SharedArrayBuffer(12));
const DOORBELL = 2;
const compareExchange = Atomics.compareExchange;
const load = Atomics.load;
const add = Atomics.add;
const now = performance.now.bind(performance);
const immediate = setImmediate;
const shared = config.load ? new Int32Array(config.load) : undefined;
const RUNNING = 0;
const SPINNING = 1;
const spinMs = shared ? config.spinWaitUs / 1000 : 0;

/**
 * Busy-wait for the next execution, briefly, instead of going to sleep at once: a sleeping thread
 * costs a wake-up (~30 µs here) when the next one is posted, which is most of the gap to a bare
 * pool call when executions come one after another. Only while a core is free for it — the host
 * thread, the running executions (the host still counts this thread's last one until it reads
 * the answer) and the threads busy-waiting already must leave one — so it never takes CPU from
 * work. Unref'd, so it never counts as a handle a handler left behind.
 */
function spinWait(): void {
  if (current || waiting.length > 0 || retiring) return;
  const ring = load(claims, DOORBELL);
  const cores = config.cores;
  // Others running (the host may still count this thread's last one), those already waiting, this
  // thread, and the host thread.
  if (load(shared!, RUNNING) - 1 + load(shared!, SPINNING) + 2 > cores) return;
  add(shared!, SPINNING, 1);
  try {
    const until = now() + spinMs;
    while (load(claims, DOORBELL) === ring && now() < until) {
      if (load(shared!, RUNNING) - 1 + load(shared!, SPINNING) + 1 > cores) break;
    }
  } finally {
    add(shared!, SPINNING, -1);
  }
}
const WITHDRAWN: ThreadAck = { n: 0, w: 1 };

/** The last answer given while another execution waited here (see CrashReport.answered); one at most. */
let answered: { k: number; ack: ThreadAck } | undefined;

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
    send(answered ? { crash: { ...crash, answered } } : { crash });
  } catch {
    // The channel is already gone; the host still sees the thread exit.
  }
}

const hello: ThreadHello = { kbWorkerPool: 'hello', threadId, port: port2 as MessagePort, claims: claims.buffer as SharedArrayBuffer };
parentPort!.postMessage(hello, [port2]);

/**
 * piscina calls this once per execution. One runs at a time: one handed over while another runs
 * waits, and begins once that one has answered — if the host has not taken it back meanwhile.
 */
export default function runExecution(t: ThreadTask): ThreadAck | Promise<ThreadAck> {
  if (current || retiring || waiting.length > 0) return new Promise((resolve) => waiting.push({ t, resolve }));
  return begin(t);
}

function begin(t: ThreadTask): ThreadAck | Promise<ThreadAck> {
  if (t.d !== undefined && compareExchange(claims, t.c ?? 0, t.d, 0) !== t.d) return WITHDRAWN;
  let cancel: HostToThread | undefined;
  if (earlyCancel?.k === t.k) cancel = earlyCancel;
  earlyCancel = undefined;
  return execute(t, cancel);
}

/** Begin the next waiting execution: after the answer for the last one is on its way to the host. */
function next(): void {
  while (!current && !retiring) {
    const w = waiting.shift();
    if (!w) return;
    const ack = begin(w.t);
    w.resolve(ack);
    if (ack !== WITHDRAWN) return;
  }
}

/** One execution. Resolves once its result is on its way; never rejects. */
async function execute({ k, task }: ThreadTask, cancel: HostToThread | undefined): Promise<ThreadAck> {
  handles.mark();
  env.apply(process.env, task.permissions?.env);
  let sent = 0;
  const session = new RunnerSession(task, (m) => {
    send({ k, m } as ThreadToHost);
    sent++;
  });
  current = { k, session };
  if (cancel) session.handle(cancel.m);
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
  if (!retire) {
    // Checked above with no timer of ours pending. piscina posts the answer from the microtasks
    // that follow this return; an immediate runs after them.
    const ack: ThreadAck = plainlyCloneable(result) ? { n: sent, r: result } : { n: sent };
    // Kept while the next one runs, until that one is answered in turn.
    answered = waiting.length > 0 ? { k, ack } : undefined;
    if (waiting.length > 0) immediate(next);
    else if (spinMs > 0) immediate(spinWait).unref();
    if (ack.r) return ack;
  }
  try {
    send(retire ? { k, m: result, retire } : { k, m: result });
  } catch (error) {
    // The handler returned something structured clone refuses (a function, a symbol …).
    const refused: RunnerResult = { type: 'result', ok: false, error: serializeError(unserializableError('The handler result', error)) };
    send(retire ? { k, m: refused, retire } : { k, m: refused });
  }
  if (retire) {
    // Never tell piscina this thread is free, and begin nothing more: the host terminates it as
    // soon as it reads the result (piscina then starts a replacement; what waited here goes to
    // another thread).
    retiring = true;
    return new Promise<never>(() => {});
  }
  return { n: sent };
}
