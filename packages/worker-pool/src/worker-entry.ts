/**
 * The thread side of the worker pool: piscina loads this module once per thread and calls its
 * default export once per session (see thread-protocol.ts). It runs core's RunnerSession (the one runner-side protocol
 * endpoint) and keeps the thread clean enough to hand to the next plugin.
 *
 * Imports only core's runner entry: the main entry builds zod schemas at load time, which would
 * add tens of milliseconds to every thread start (and a replacement thread starts after every
 * crash or timeout).
 */
import { MessageChannel, parentPort, receiveMessageOnPort, threadId, workerData, type MessagePort } from 'node:worker_threads';
import { RunnerSession, serializeError, unserializableError, type RunnerResult } from '@kb-labs/plugin-execution-core/runner';
import { OutputTap } from './output-tap.js';
import { EnvGate, HandleWatch, captureIntrinsics, pristinePost, retireReason } from './thread-hygiene.js';
import { CELLS, DOORBELL, LINGER_MS, type CrashReport, type HostMessage, type HostToThread, type StagedTask, type ThreadAck, type ThreadConfig, type ThreadHello, type ThreadResult, type ThreadTask, type ThreadToHost } from './thread-protocol.js';

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
/** Ends the open session (a piscina task, see thread-protocol.ts); only while one is open may the thread claim an execution. */
let endSession: ((ack: ThreadAck) => void) | undefined;
/** In session with nothing to run: the next execution handed over begins at once; none for LINGER_MS ends the session. */
let lingering = false;
let lingerTimer: NodeJS.Timeout | undefined;
/** This thread asked to be retired: it begins nothing more (the host ends it). */
let retiring = false;

/** Executions handed over the channel to run after the current one, in the order they came. */
const staged: StagedTask[] = [];

/** The claim cells and the doorbell (see thread-protocol.ts), and the operations on them, taken before plugin code can replace them. */
const claims = new Int32Array(new SharedArrayBuffer(4 * (CELLS + 1)));
const compareExchange = Atomics.compareExchange;
const load = Atomics.load;
const add = Atomics.add;
const now = performance.now.bind(performance);
const immediate = setImmediate;
const timeout = setTimeout;
const clear = clearTimeout;
const receive = receiveMessageOnPort;
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
  if (!lingering || retiring) return;
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
/** A cancel that arrived before its execution did (they travel on different ports). */
let earlyCancel: HostMessage | undefined;

function onChannel(message: HostToThread): void {
  if ('task' in message) {
    staged.push(message);
    if (lingering) wake();
  } else if (current && message.k === current.k) current.session.handle(message.m);
  else if (message.m.type === 'cancel') earlyCancel = message;
}
channel.on('message', onChannel);

/** Take in, synchronously, whatever the host has posted on the channel so far. */
function drainChannel(): void {
  for (let entry = receive(channel); entry !== undefined; entry = receive(channel)) onChannel(entry.message as HostToThread);
}

/** The first waiting execution the host has not taken back, now this thread's (or none). */
function claimNext(): StagedTask | undefined {
  for (let t = staged.shift(); t !== undefined; t = staged.shift()) {
    if (compareExchange(claims, t.c, t.d, 0) === t.d) return t;
  }
  return undefined;
}

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

const hello: ThreadHello = { kbWorkerPool: 'hello', threadId, port: port2 as MessagePort, claims: claims.buffer as SharedArrayBuffer };
parentPort!.postMessage(hello, [port2]);

/**
 * piscina calls this once per session (see thread-protocol.ts): it runs `first`, then whatever the
 * host hands over the channel while the session is open, one at a time, answering each on the
 * channel. It resolves once nothing has come for LINGER_MS. Never rejects.
 */
export default function runSession(first: ThreadTask): Promise<ThreadAck> {
  return new Promise((resolve) => {
    endSession = resolve;
    void serve(first);
  });
}

/** Run `t`, then each execution waiting behind it; linger when none is left. */
async function serve(t: ThreadTask): Promise<void> {
  for (;;) {
    const result = await execute(t);
    executions++;
    const retire = retireReason(guard, handles, executions, config.maxExecutions);
    if (retire) {
      // Never tell piscina this thread is free, and begin nothing more: the host terminates it as
      // soon as it reads the answer (piscina then starts a replacement; what waited here goes to
      // another thread).
      retiring = true;
      sendResult(t.k, result, retire);
      return;
    }
    sendResult(t.k, result, undefined);
    drainChannel();
    const next = claimNext();
    if (!next) {
      linger();
      return;
    }
    // A turn of the event loop between two executions: whatever the last one left behind (a
    // rejection nobody handled, a timer) surfaces now, on the thread that ran it, before the next.
    await new Promise<void>((resolve) => immediate(resolve));
    t = next;
  }
}

function linger(): void {
  lingering = true;
  // Checked above with no timer of ours pending; unref'd, it never keeps the thread up.
  lingerTimer = timeout(lingerEnd, LINGER_MS);
  lingerTimer.unref();
  if (spinMs > 0) immediate(spinWait).unref();
}

/** An execution was handed over while the thread lingered: it begins now. */
function wake(): void {
  const next = claimNext();
  if (!next) return;
  lingering = false;
  clear(lingerTimer);
  void serve(next);
}

function lingerEnd(): void {
  if (!lingering) return;
  drainChannel();
  if (!lingering) return;
  // Nothing came: end the session. What the host hands over from now on is not claimed here (the
  // host takes it back when it reads this reply).
  lingering = false;
  const end = endSession;
  endSession = undefined;
  end?.({ idle: 1 });
}

/** The answer for execution `k`, on the channel. */
function sendResult(k: number, result: RunnerResult, retire: ThreadResult['retire']): void {
  try {
    send(retire ? { k, m: result, retire } : { k, m: result });
  } catch (error) {
    // The handler returned something structured clone refuses (a function, a symbol …).
    const refused: RunnerResult = { type: 'result', ok: false, error: serializeError(unserializableError('The handler result', error)) };
    send(retire ? { k, m: refused, retire } : { k, m: refused });
  }
}

/** One execution, to its result. Never rejects. */
async function execute({ k, task }: ThreadTask): Promise<RunnerResult> {
  handles.mark();
  env.apply(process.env, task.permissions?.env);
  const session = new RunnerSession(task, (m) => send({ k, m } as ThreadToHost));
  current = { k, session };
  // A cancel that came before the execution did (they may travel on different ports).
  if (earlyCancel?.k === k) session.handle(earlyCancel.m);
  earlyCancel = undefined;
  output.begin((out, lines) => send({ k, out, lines }));
  try {
    return await session.run();
  } finally {
    output.end();
    current = undefined;
  }
}
