/**
 * The thread side of the worker pool: runs one execution at a time with core's RunnerSession,
 * and keeps the thread clean enough to hand to the next plugin. Imports only core's zod-free
 * runner entry: building the schemas would add tens of milliseconds to every thread start.
 */
import { getHeapStatistics } from 'node:v8';
import { MessageChannel, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { RunnerSession, onHandlerLoading, serializeError, tightenViews, unserializableError, type RunnerResult, type RunnerTask } from '@kb-labs/plugin-execution-core/runner';
import { BEGUN, LOADING, LOOKED_FOR_TASK, STOPPED, TAKEN, ThreadFlow, WAITING_FOR_TASK, weighedCopy } from './flow-control.js';
import { OutputTap } from './output-tap.js';
import { TaskUnpacker } from './task-wire.js';
import { FdWatch } from './fd-watch.js';
import { LockWatch } from './lock-watch.js';
import { LaterWatch } from './later-watch.js';
import { ListenerWatch } from './listener-watch.js';
import { ChildReaper } from './child-reaper.js';
import { closeInspector, inheritFlags } from './inspector-lock.js';
import { forgetSharedState, watchEnvironmentData, watchGlobalSymbols, watchProcessSettings, watchPromiseHooks, watchThreadPriority } from './shared-state.js';
import { watchModuleHooks } from './module-hooks.js';
import { ChildTable, SHARED_SLOTS } from './child-table.js';
import { EnvGate, HandleWatch, captureIntrinsics, globalsTampered, pristinePost, retireReason, watchPortClose } from './thread-hygiene.js';
import type { CrashReport, HostToThread, ReapRequest, TaskMessage, ThreadConfig, ThreadRetireReason, ThreadHello, ThreadToHost, ThreadVerdict } from './thread-protocol.js';

// First, before any plugin code can run on this thread. A channel closed (by plugin code that
// found it among the thread's handles) carries nothing more: the thread takes no more tasks, and
// the host, which sees it close once this thread is back in its event loop, ends it (PoolThread).
watchPortClose((port) => {
  if (port === channel || port === taskPort) retiring = true;
});
closeInspector();
const guard = captureIntrinsics();
const globalSymbols = watchGlobalSymbols();
const processSettings = watchProcessSettings();
const threadPriority = watchThreadPriority();
const environmentData = watchEnvironmentData();
const moduleHooks = watchModuleHooks();
const promiseHooks = watchPromiseHooks();
// Before LaterWatch wraps diagnostics_channel: its own subscription is not a handler's.
const children = new ChildReaper();
const watches = { handles: new HandleWatch(), listeners: new ListenerWatch(), later: new LaterWatch(), fds: new FdWatch(), locks: new LockWatch() };
const env = new EnvGate(process.env);
// Copied before any plugin code runs: `workerData` is reachable from it, and changed in place it
// would lift or cut the host's limits for every later handler on the thread.
const given = workerData as ThreadConfig;
const config: ThreadConfig = { maxExecutions: given.maxExecutions, output: { maxOutputPerStream: given.output.maxOutputPerStream, maxLogLineLength: given.output.maxLogLineLength }, execArgv: [...given.execArgv] };
inheritFlags(config.execArgv);
const output = new OutputTap(config.output);
const tasks = new TaskUnpacker();
const listenerCount = process.listenerCount.bind(process);
const hasCaptureCallback = process.hasUncaughtExceptionCaptureCallback.bind(process);

const { port1: channel, port2 } = new MessageChannel();
// Tasks come on a port of their own, which no listener reads: the thread reads a task only when it
// looks for one (lookForTask), after saying so, so that the host can tell a thread unpacking a
// large task from one kept busy by what the previous handler left running (LOOKED_FOR_TASK).
const { port1: taskPort, port2: taskPort2 } = new MessageChannel();
const send = (message: ThreadToHost): void => pristinePost(channel, message);
// [0] wakes this thread when idle; the rest paces what an execution sends (flow-control.ts).
// After them, the table of children still running (child-table.ts).
const wake = new Int32Array(new SharedArrayBuffer(4 * SHARED_SLOTS));
children.track(new ChildTable(wake));
const flow = new ThreadFlow(wake);
/** What an execution sends before its answer (logs, events, calls, output): weighed as it will cross (weighedCopy), paced. */
const sendPaced = <M extends Extract<ThreadToHost, { units?: number }>>(sent: M): void => {
  const { copy: message, units } = weighedCopy(sent);
  message.units = units;
  flow.pace(units);
  try {
    send(message);
  } catch (error) {
    flow.unsent(units);
    throw error;
  }
};
// Taken before plugin code can replace them (replacing them retires the thread, after the fact).
const load = Atomics.load;
const add = Atomics.add;
const store = Atomics.store;
const wait = Atomics.wait;
const receive = receiveMessageOnPort;
const immediate = setImmediate;
const notify = Atomics.notify;
const onProcess = process.on.bind(process);
onHandlerLoading((loading) => {
  store(wake, LOADING, loading ? 1 : 0);
  if (loading) return;
  notify(wake, LOADING);
  // Stopped while it loaded (the host waits for the load to end before it ends the thread): the
  // handler must not run after its caller was told it timed out or was aborted.
  if (current !== undefined && load(wake, STOPPED) === (current.k | 0)) throw new Error('The execution was stopped while its handler\'s modules loaded; the handler did not run');
});
// What Node runs between two of its own callbacks (timers, immediates): the nextTick queue, the
// microtasks, then the rejections nobody handled. Undocumented but on every Node this package
// supports; without it, every execution waits for an event-loop turn instead (idleSoon). Not when
// the host runs with --pending-deprecation: Node then gives it as a deprecated wrapper (DEP0134)
// whose first call warns on the thread's stderr (a handler's output), or throws with
// --throw-deprecation and ends the thread.
const tickCallback = (process as { _tickCallback?: () => void })._tickCallback;
const runTicksAndRejections = tickCallback?.name === 'deprecated' ? undefined : tickCallback;

/** Event-loop turns a handle or request may stay listed after the callback that answered from it (execute()). */
const LEFTOVER_TURNS = 3;

let current: { k: number; session: RunnerSession } | undefined;
let executions = 0;
/** Executions since the first that left code to run later on this thread (LaterWatch), 0 while none has. */
let laterRuns = 0;
/** Set while waitForTasks runs an execution's microtasks itself: the execution must not schedule another wait. */
let inWaitLoop = false;
/** It asked to be retired: the host terminates it, and it takes no more tasks. */
let retiring = false;

function onTask(message: TaskMessage | ReapRequest): void {
  add(wake, TAKEN, 1);
  if ('reap' in message) return reapThenPark();
  const packed = message.task;
  // Before anything of the task is read: unpacking it runs code a handler may have replaced.
  if (lastHandler !== undefined && packed.h !== lastHandler) {
    if (channelTampered() || globalsTampered(guard, watches.listeners) || globalSymbols.changed() || processSettings.changed() || threadPriority.changed() || environmentData.changed() || moduleHooks.registered()) return decline(message.k, 'globals-tampered');
    // What the last handler left, also what it set up after its answer (a few awaits on) and after the checks.
    if (laterRuns > 0 || watches.later.pending() !== undefined || watches.handles.leftover() || promiseHooks.changed() || watches.locks.touched()) return decline(message.k, 'handles-left');
    try {
      forgetSharedState();
    } catch {
      return decline(message.k, 'globals-tampered');
    }
  }
  lastHandler = packed.h;
  // Begun from here: unpacking it may run what its handler patched (Map.prototype.get …), and an
  // execution begun must never be run again elsewhere, whatever its thread does next.
  store(wake, BEGUN, message.k | 0);
  void execute(message.k, tasks.unpack(packed));
}

/** Take the task waiting on the task port, if there is one: true if one was there. */
function lookForTask(): boolean {
  add(wake, LOOKED_FOR_TASK, 1);
  const entry = receive(taskPort);
  if (entry) onTask(entry.message as TaskMessage | ReapRequest);
  return entry !== undefined;
}

/** A platform call's answer, a channel message, a cancel: for the execution running now, or dropped. */
function onMessage(message: HostToThread): void {
  // Sent after its execution's task: a task still on its port (this thread was in its event loop) is taken first.
  if (!current && !retiring) lookForTask();
  // postMessage carried whole buffers (tight-views.ts in core).
  if (current?.k === message.k) current.session.handle(tightenViews(message.m));
}
channel.on('message', onMessage);
// Plugin code that found the channel among the thread's handles and took its listener off would
// leave a later execution deaf to its platform answers and its cancel; unref'd, the thread would
// exit while a later execution waits for one. (Swapping the listener for its own, or transferring
// the port away, is the plugin patching the runtime: not isolated, docs/backends/worker-pool.md.)
const channelListeners = channel.listenerCount.bind(channel);
const channelHasRef = (channel as unknown as { hasRef(): boolean }).hasRef.bind(channel);
const channelTampered = (): boolean => channelListeners('message') !== 1 || !channelHasRef();

/**
 * Between executions the thread sleeps in Atomics.wait, not in its event loop (as piscina's do):
 * the host's notify wakes it straight into the next task, which costs both sides less than an
 * event-loop wake-up (docs/benchmarks.md). Blocked, never spinning.
 *
 * Runs as an event-loop callback, never inside a microtask. Once an execution has begun, its
 * microtasks run here, as Node runs them between two of its callbacks, followed by the
 * rejections nobody handled: a handler that finishes without timers or I/O has answered by then,
 * and whatever it left unhandled has surfaced on this thread (and not in the next execution), so
 * the next task is awaited at once. One that waits on timers or I/O goes back to the event loop.
 */
function waitForTasks(): void {
  for (;;) {
    while (!current && !retiring) {
      const seen = load(wake, 0);
      if (!lookForTask()) {
        store(wake, WAITING_FOR_TASK, 1);
        wait(wake, 0, seen);
        store(wake, WAITING_FOR_TASK, 0);
      }
    }
    if (!runTicksAndRejections) return;
    inWaitLoop = true;
    try {
      runTicksAndRejections();
    } finally {
      inWaitLoop = false;
    }
    if (current || retiring) return;
  }
}

// The host learns from this why the thread is going, and whether an execution was running on it.
// A handler that installed its own 'uncaughtException' listener keeps the thread alive: no report.
process.on('uncaughtExceptionMonitor', (error, origin) => {
  // Nor one that set a capture callback (node:domain does): the error is the handler's to handle.
  if (listenerCount('uncaughtException') > 0 || hasCaptureCallback()) return;
  report({ k: current?.k ?? -1, reason: origin === 'unhandledRejection' ? 'unhandled-rejection' : 'uncaught-exception', error: serializeError(error) });
});
/**
 * The exit code of a `process.exit()` that began but did not end the thread: an 'exit' listener
 * of the handler's threw, and the handler went on (caught it, or failed with it). The thread is
 * ended after the execution with that code, as that call would have (WORKER_CRASHED `exit`): a
 * thread Node takes for exiting runs no later handler's 'exit' listeners.
 */
let exitBegan: number | undefined;
const exitNow = process.exit.bind(process);
process.on('exit', (exitCode) => {
  exitBegan = exitCode;
  report({ k: current?.k ?? -1, reason: 'exit', exitCode });
});

function report(crash: CrashReport): void {
  try {
    send({ crash });
  } catch {
    // The channel is already gone; the host still sees the thread exit.
  }
}

const heapLimitMb = Math.round(getHeapStatistics().heap_size_limit / 1024 / 1024);
const hello: ThreadHello = { kbWorkerPool: 'hello', port: port2, tasks: taskPort2, wake: wake.buffer as SharedArrayBuffer, heapLimitMb };
parentPort!.postMessage(hello, [port2, taskPort2]);
idleSoon();

/** The number (on this thread's channel, TaskPacker) of the handler whose task the thread took last. */
let lastHandler: number | undefined;

/**
 * What a handler did to the thread's globals, and code it left to run later, are looked at when
 * another handler's task comes, not after every execution: the same handler again meets only what
 * it did itself, as it meets its module's own state. Then the thread declines the task unread (the
 * host gives it to another thread) and is retired.
 */
function decline(k: number, reason: ThreadRetireReason): void {
  void retireSoon().then(() => {
    flow.answering(k);
    send({ k, declined: reason });
    park();
  });
}

/**
 * The thread takes no more tasks (nor sleeps in waitForTasks while it waits), and kills and
 * collects its handlers' children (ChildReaper) before it says so: the host ends it then, and
 * they would outlive it as zombies of the host.
 */
function retireSoon(): Promise<void> {
  retiring = true;
  // What a handler left may run while they are collected (a child it starts now is refused, and
  // throws): its execution is answered, and ended by that, the thread would leave them zombies.
  onProcess('uncaughtException', () => undefined);
  return children.reap();
}

/**
 * After its last word (an answer that retires it, a decline) the thread runs nothing more: it
 * blocks here until the host's terminate interrupts the wait. Back in its event loop, what a
 * handler left there (an unref'd immediate, a timer) would run between that word and its end.
 */
function park(): never {
  const never = new Int32Array(new SharedArrayBuffer(4));
  for (;;) wait(never, 0, 0);
}

/** One execution, answered on the channel after everything else it sent. */
async function execute(k: number, task: RunnerTask): Promise<void> {
  watches.handles.mark();
  watches.listeners.mark();
  env.apply(process.env, task.permissions?.env);
  const session = new RunnerSession(task, (m) => sendPaced({ k, m }));
  current = { k, session };
  output.begin((out, lines) => sendPaced({ k, out, lines }));
  clearExitCode();
  const result = await session.run();
  // Node skips the 'exit' event on a second process.exit(): this one ends the thread.
  if (exitBegan !== undefined) exitNow(exitBegan);
  output.end();
  // A Web Lock held or waited for: the manager answers in a later turn of the loop, asked only once a handler asked for a lock.
  const asking = watches.locks.left();
  // What the handler left may be due at once (a 0 ms timer) and run while the loop turns below:
  // answered first, it cannot hold the answer back, nor keep it for good (a loop); the host hears
  // after it whether the thread stays (its verdict).
  const early = watches.handles.leftover();
  if (early || asking) answer(k, result, 'pending');
  const locksLeft = asking !== undefined && (await asking);
  // A handler that answered from inside a callback (fs.readFile's, a stream's 'close', a child's
  // 'exit', a port closed in its own 'message') still has that callback's request or handle listed
  // as live for a turn or two: looked at again after each, not taken for a handle left behind
  // (which would retire the thread after every such execution). Not when what it left retires the
  // thread anyway (an unref'd immediate, a Web Lock request granted once the caller, answered, lets
  // the lock go: either would run in those turns).
  // (After the lock manager's answer the loop has turned: what ran meanwhile may have left a handle.)
  let handlesLeft = early || (asking !== undefined && !locksLeft && watches.handles.leftover());
  for (let turn = 0; turn < LEFTOVER_TURNS && handlesLeft && !locksLeft && watches.later.pending() !== 'resource'; turn++) {
    await new Promise((resolve) => immediate(resolve));
    handlesLeft = watches.handles.leftover();
  }
  current = undefined;
  executions++;
  const left = watches.later.end();
  if (left === 'later' || laterRuns > 0) laterRuns++;
  // handlesLeft is what the handles are now: nothing has run since it was looked at.
  const retire = retireReason(handlesLeft || watches.fds.leftOpen() || locksLeft, left, laterRuns, executions, config.maxExecutions);
  // Answered before its handler's children are collected: while the loop turns for them, what the
  // handler left may run, and crash the thread; its execution is settled by then, never taken for
  // one that had not begun (and run again elsewhere). The host waits for `reaped` to end it.
  if (retire) retiring = true;
  const verdict = verdictOf(retire, retire !== undefined && children.running);
  if (early || asking) {
    flow.verdictOn(k);
    send({ k, verdict });
  } else {
    answer(k, result, verdict);
  }
  if (!retire) {
    if (!inWaitLoop) idleSoon();
    return;
  }
  if (verdict.reaping) reapThenPark();
  else park();
}

/** Kill and collect its handlers' children, then say so (the host ends it then), and take nothing more. */
function reapThenPark(): void {
  void retireSoon().then(() => {
    send({ reaped: true });
    park();
  });
}

/**
 * Wait for the next task after one turn of the event loop: what the handler left behind (a
 * rejection nobody handled) surfaces first, on this thread, not in the next execution. Not
 * unref'd: an unref'd immediate does not keep the loop from blocking in its poll, so after an
 * answer from a timer's callback the thread would sleep in the loop, never saying it waits for a
 * task, and the pool would take the idle thread for one left busy (and end it). It runs before
 * the next execution's handles are counted, or is seen gone by the second count (execute()).
 */
function idleSoon(): void {
  immediate(waitForTasks);
}

/**
 * What the thread says of itself with its answer (or after it): it goes (`retire`, collecting its
 * handler's children first with `reaping`), or stays, bound to its handler (code it left to run
 * later, a listener it left on process: node:domain adds two) for that handler's tasks (idle-choice.ts).
 */
function verdictOf(retire: ThreadRetireReason | undefined, reaping: boolean): ThreadVerdict {
  if (retire) return reaping ? { retire, reaping } : { retire };
  return laterRuns > 0 || watches.listeners.changedSinceLastLook() ? { bound: true } : {};
}

/** What an earlier handler set as the exit code does not become this one's (`process.exit()` with no code uses it). */
function clearExitCode(): void {
  try {
    // Read first: the setter validates and writes more than the getter reads.
    if (process.exitCode !== undefined) process.exitCode = undefined;
  } catch {
    // Made unwritable by plugin code: the process checks retire such a thread.
  }
}

/** The execution's answer, with the thread's verdict, or `pending` when the verdict follows it (`{ k, verdict }`). */
function answer(k: number, result: RunnerResult, verdict: ThreadVerdict | 'pending'): void {
  flow.answering(k);
  const says = (m: RunnerResult): ThreadToHost => (verdict === 'pending' ? { k, m, pending: true } : { k, m, ...verdict });
  try {
    send(says(result));
  } catch (error) {
    // The handler returned something structured clone refuses (a function, a symbol …).
    send(says({ type: 'result', ok: false, error: serializeError(unserializableError('handler result', error, result.ok ? result.data : undefined)) }));
  }
}
