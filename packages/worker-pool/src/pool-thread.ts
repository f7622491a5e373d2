import { Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { ExecutionError } from '@kb-labs/plugin-execution-core';
import { clearTimeout, HostSession, OutputPacer, serializeErrorForRunner, setTimeout, tightenViews, unreadableMessageError, unserializableError, unwrapRunnerResult } from '@kb-labs/plugin-execution-core/backend-kit';
import { LOAD_WAIT_MS, STOPPED, answeredBy, countedAsSent, holdSending, loadEnded, markRead, verdictBy } from './flow-control.js';
import { HandOff } from './hand-off.js';
import { ReapWait, endedWhileWaiting } from './reap-wait.js';
import { TaskPacker } from './task-wire.js';
import { ChildTable, killChildrenAtExit } from './child-table.js';
import { threadMessageProblem } from './thread-message.js';
import type { Execution, ThreadEndedBy, ThreadEvents, ThreadSettings } from './pool-contract.js';
import type { CrashReport, HostToThread, ReapRequest, TaskMessage, ThreadHello, ThreadToHost, ThreadVerdict, StaleReason } from './thread-protocol.js';
import { ANSWER_WITHIN_MS, CHANNEL_CLOSED_GRACE_MS, REAP_WAIT_MS, STOP_WITHIN_MS } from './thread-deadlines.js';

const MAX_CRASH_REPORTS = 4; // A thread sends one crash report as it dies, and an `exit` after it: more are forged.
const FORGED = 'posted on its channel by plugin code, past ctx';

/**
 * The host's side of one worker thread: its channel, the execution it runs (one at a time), and —
 * when it dies — what says why (exit code, 'error' event, the thread's own last words).
 */
export class PoolThread<Lane = unknown> {
  readonly id: number;
  readonly lane: Lane;
  /** Its channel, from its hello: until then it takes nothing. */
  port: MessagePort | undefined;
  execution: Execution | undefined;
  /** Its heap cap in MB, as V8 set it (Node's default where no limit was given), once it said hello. */
  heapLimitMb: number | undefined;
  /** It declined the execution handed to it, unbegun (its globals were changed by an earlier handler). */
  declined = false;
  /** What it sent that the pool's runner never sends: it was ended for it (see threadMessageProblem). */
  protocolError: string | undefined;
  readonly reports: CrashReport[] = [];
  /** The Worker's 'error' event: an uncaught exception, or ERR_WORKER_OUT_OF_MEMORY. */
  error: unknown;
  exitCode: number | undefined;
  /** Set when the host ends the thread on purpose; the first reason is the one counted. */
  endedBy: ThreadEndedBy | undefined;
  /** The pool's, reused across idle spells. */
  idleTimer: NodeJS.Timeout | undefined;
  /** Which load of each plugin's code it has run (RegisteredPlugin.moduleKey; its modules stay loaded on the thread). */
  readonly pluginLoads = new Map<string, number>();
  /** A plugin it ran was reloaded or unregistered since: retire it, for that, instead of giving it more work. */
  stale: StaleReason | undefined;
  /** Its last answer said it holds code its handler left to run later, or a listener on process: another handler's task would be declined there. */
  bound = false;
  /** The handler (handlerKey) it was handed last, if any. */
  get lastHandler(): string | undefined {
    return this.#tasks.last;
  }
  /** Exited, or abandoned: what close() waits for. */
  readonly done: Promise<void>;
  /**
   * Terminated, it did not exit within STOP_WITHIN_MS: its handler is in a synchronous call no
   * terminate interrupts, or left work running on Node's thread pool (its loop closes only once that
   * ends). The pool no longer counts it (another takes its place); it exits when that call returns,
   * and until then the host process cannot exit either (Node joins every thread on the way out).
   */
  abandoned = false;
  readonly #worker: Worker;
  readonly #events: ThreadEvents;
  readonly #cancelGraceMs: number;
  readonly #runner: { id: string; threadId: number };
  /** What the idle thread waits on (ThreadHello.wake), and the table of its handlers' children in the same buffer. */
  #wake: Int32Array | undefined;
  #children: ChildTable | undefined;
  /** What it says of taking the tasks handed to it, from its hello on. */
  #handOff: HandOff | undefined;
  /** Where its tasks go (ThreadHello.tasks). */
  #taskPort: MessagePort | undefined;
  #session: HostSession | undefined;
  /**
   * While whoever takes the execution's output is behind (DispatchControl.outputPace): the thread
   * is held at its next message, and what it sent meanwhile is counted read (#unread) only once
   * that receiver caught up.
   */
  readonly #pacer = new OutputPacer(
    () => holdSending(this.#wake!, true),
    () => {
      const units = this.#unread;
      this.#unread = 0;
      if (units) markRead(this.#wake!, units);
      holdSending(this.#wake!, false);
    },
  );
  #unread = 0;
  /** The units of all the thread's messages read so far (wrapping as an int32, as the thread's count does). */
  #received = 0;
  readonly #tasks = new TaskPacker();
  #graceTimer: NodeJS.Timeout | undefined;
  #stuckTimer: NodeJS.Timeout | undefined;
  readonly #reap = new ReapWait(() => this.endedBy && this.end(this.endedBy));
  /** Set while a stopped execution's modules load (#endOnceLoaded): keeps the host up, and ends the thread after. */
  #loadTimer: NodeJS.Timeout | undefined;
  /** The execution it answered `pending`: its verdict (stay or go) is still to come, and it takes nothing meanwhile. */
  #verdictFor: number | undefined;
  #markDone!: () => void;
  readonly #onStop = (reason: ExecutionError): void => this.#stop(reason);

  /** Throws what Worker's constructor throws (bad execArgv, out of resources). */
  constructor(lane: Lane, settings: ThreadSettings, events: ThreadEvents) {
    this.lane = lane;
    this.#events = events;
    this.#cancelGraceMs = settings.cancelGraceMs;
    const worker = new Worker(settings.entry, {
      workerData: settings.config,
      env: settings.env,
      ...(settings.resourceLimits ? { resourceLimits: settings.resourceLimits } : {}),
      ...(settings.execArgv ? { execArgv: settings.execArgv } : {}),
    });
    this.#worker = worker;
    this.id = worker.threadId;
    this.#runner = { id: `thread:${this.id}`, threadId: this.id };
    this.done = new Promise((resolve) => (this.#markDone = resolve));
    // After the hello, parentPort is the plugin's: what it posts there is read and dropped.
    worker.on('message', (message: ThreadHello) => this.#onHello(message));
    worker.on('error', (error) => (this.error ??= error));
    worker.once('exit', (code) => {
      this.exitCode = code;
      // Whatever the thread sent before it went (its answer, its last words) is queued on the channel.
      const port = this.port;
      for (let entry = port && receiveMessageOnPort(port); entry; entry = receiveMessageOnPort(port!)) this.#onMessage(entry.message);
      port?.close();
      this.#taskPort?.close();
      // Children its handlers left that it could not collect itself (it looped, crashed, or was terminated) go with it.
      this.#children?.killLeft();
      for (const timer of [this.#graceTimer, this.#stuckTimer, this.idleTimer, this.#loadTimer]) clearTimeout(timer);
      events.gone(this);
      this.#markDone();
    });
    // Never keeps the host alive by itself (while an execution runs, its time limit's timer does).
    // After the listeners: adding a 'message' listener refs the Worker again.
    worker.unref();
  }

  /** It said hello: one that exits before that failed to start. */
  get ready(): boolean {
    return this.port !== undefined;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  /** It took the last task handed to it (one it never took never began there). */
  get tookLast(): boolean {
    return this.#handOff?.tookLast ?? false;
  }

  /** Its runtime began execution `k` (said where plugin code cannot write): it must never run elsewhere then. */
  began(k: number): boolean {
    return this.#handOff?.began(k) ?? false;
  }

  /** Hand it an execution; false (the execution rejected with VALIDATION_ERROR) if the input cannot be posted. */
  run(execution: Execution): boolean {
    const task = this.#tasks.pack(execution.task);
    this.#handOff!.posting();
    try {
      this.#taskPort!.postMessage({ k: execution.k, task } satisfies TaskMessage);
    } catch (error) {
      this.#tasks.unsent(task, execution.task);
      execution.reject(unserializableError('input', error, execution.task.input));
      return false;
    }
    this.#handOff!.posted();
    this.execution = execution;
    this.pluginLoads.set(execution.task.pluginId, execution.task.moduleKey ?? 0);
    execution.control.setRunner(this.#runner);
    execution.stopListening?.();
    execution.stopListening = execution.control.onStop(this.#onStop);
    return true;
  }

  /**
   * It has not taken the execution handed to it `ms` ago, nor looked for it since (one that looked
   * is reading it: a large input takes seconds): something the previous handler left running
   * after its answer (a microtask or nextTick loop) keeps it busy.
   */
  leftBusy(now: number, ms: number): boolean {
    return this.execution !== undefined && this.alive && this.#handOff!.leftBusy(now, ms);
  }

  /** Idle (no execution), and not waiting for a task at `checks` checks in a row: what a handler left running after its answer keeps it busy, though nothing is handed to it. */
  idleSpinning(checks: number): boolean {
    return this.#handOff?.idleSpinning(this.execution === undefined && this.alive, checks) ?? false;
  }

  end(why: ThreadEndedBy): void {
    if (this.alive) this.endedBy ??= why;
    // Terminated once: each terminate() adds an 'exit' listener, and a stuck thread is ended again at every check.
    if (!this.alive || this.#stuckTimer !== undefined || this.#reapsFirst()) return;
    if (this.#children) this.#children.whenNotSpawning(() => void this.#worker.terminate());
    else void this.#worker.terminate();
    this.#stuckTimer ??= setTimeout(() => {
      this.abandoned = true;
      this.#events.stuck(this);
      this.#markDone();
    }, STOP_WITHIN_MS).unref();
  }

  /** Retired, it collects its handler's children before it goes (ChildReaper, ReapWait); it takes nothing meanwhile (`endedBy` is set). */
  #endOnceReaped(why: ThreadEndedBy): void {
    this.endedBy ??= why;
    this.#reap.begin();
  }

  /** Idle with children listed (started by its handler's code a few awaits after the verdict): it collects them first, or they stay zombies of the host. */
  #reapsFirst(): boolean {
    if (this.#reap.given || this.execution || this.#verdictFor !== undefined || !endedWhileWaiting(this.endedBy!) || !this.#children?.listsAny()) return false;
    this.#handOff!.post(this.#taskPort!, { reap: true } satisfies ReapRequest);
    this.#endOnceReaped(this.endedBy!);
    return true;
  }

  /** Shutdown: ended now, or once it has settled what its handler left (its verdict, its children: they must not outlive the backend), REAP_WAIT_MS at most. */
  stop(): void {
    if (!this.#reap.waiting && this.#verdictFor === undefined) return this.end({ kind: 'stopped' });
    setTimeout(() => this.end({ kind: 'stopped' }), REAP_WAIT_MS).unref();
  }

  /** Detach the execution it ran, to be settled by the caller. */
  release(): Execution | undefined {
    const execution = this.execution;
    if (!execution) return undefined;
    this.execution = undefined;
    execution.stopListening?.();
    execution.stopListening = undefined;
    this.#session?.close();
    this.#session = undefined;
    // The next execution starts with the whole window.
    this.#pacer.release();
    clearTimeout(this.#graceTimer);
    return execution;
  }

  #onHello(message: ThreadHello): void {
    if (this.port || message?.kbWorkerPool !== 'hello') return;
    this.#taskPort = message.tasks;
    this.port = message.port;
    this.#wake = new Int32Array(message.wake);
    this.#handOff = new HandOff(this.#wake);
    this.#children = killChildrenAtExit(new ChildTable(this.#wake));
    if (typeof message.heapLimitMb === 'number' && Number.isFinite(message.heapLimitMb)) this.heapLimitMb = message.heapLimitMb;
    this.port.on('message', (m: unknown) => this.#onMessage(m));
    this.port.on('messageerror', (error: Error) => this.#unreadable(error));
    this.port.on('close', () => this.#onChannelClosed());
    this.port.unref();
    this.#events.ready(this);
  }

  #onMessage(raw: unknown): void {
    if (this.protocolError !== undefined) return;
    const problem = threadMessageProblem(raw);
    if (problem) return this.#violate(problem);
    try {
      this.#take(raw as ThreadToHost);
    } catch (error) {
      this.#violate(`its message could not be taken: ${(error as Error)?.message ?? String(error)}`);
    }
  }

  #take(message: ThreadToHost): void {
    if ('units' in message && message.units) {
      this.#received = (this.#received + message.units) | 0;
      if (!countedAsSent(this.#wake!, this.#received)) return this.#violate(`a message its runtime did not count as sent (${FORGED})`);
      this.#read(message.units);
    }
    if ('crash' in message) {
      if (this.reports.length >= MAX_CRASH_REPORTS) return this.#violate('more crash reports than a dying thread sends');
      this.reports.push(message.crash);
      return;
    }
    if ('reaped' in message) return this.endedBy === undefined ? this.#forged('a reaped') : this.#reap.done();
    if ('verdict' in message) return this.#onVerdict(message.k, message.verdict);
    const execution = this.execution;
    if (execution?.k !== message.k) {
      // What the runtime sends after its answer is paced (counted above) and dropped; an answer comes once.
      if ('declined' in message) this.#forged('a decline');
      else if ('m' in message && message.m.type === 'result') this.#forged('a result');
      return;
    }
    // An answer or a decline is the runtime's only if it said so where plugin code cannot write (flow-control.ts).
    if (('declined' in message || ('m' in message && message.m.type === 'result')) && !answeredBy(this.#wake!, message.k)) {
      return this.#violate(`${'declined' in message ? 'a decline' : 'a result'} its runtime did not send (${FORGED})`);
    }
    if ('declined' in message) {
      // Given to another thread once this one is gone (ThreadPool's #onRunnerGone).
      this.declined = true;
      this.end({ kind: 'retired', reason: message.declined });
    } else if ('out' in message) {
      for (const line of message.lines) execution.control.log(message.out === 'stdout' ? 'info' : 'error', line, undefined, message.out);
      this.#pacer.after(execution.control);
    } else if (message.m.type === 'result') {
      this.release();
      try {
        execution.resolve(unwrapRunnerResult(tightenViews(message.m)));
      } catch (error) {
        execution.reject(error);
      }
      if (!message.pending) return this.#takeVerdict(message);
      this.#verdictFor = message.k;
      this.#events.owing(this);
    } else {
      this.#session ??= new HostSession(execution.control, (m) => this.port!.postMessage({ k: execution.k, m } satisfies HostToThread));
      this.#session.handle(tightenViews(message.m));
      this.#pacer.after(execution.control);
    }
  }

  /** The verdict that follows a `pending` answer (the thread looked at its handler's leftovers first). */
  #onVerdict(k: number, verdict: ThreadVerdict): void {
    if (this.#verdictFor !== k || !verdictBy(this.#wake!, k)) return this.#forged('a verdict');
    this.#verdictFor = undefined;
    this.#takeVerdict(verdict);
    this.#events.verdict(this);
  }

  /** What the thread said of itself after an execution: it goes (collecting its handler's children first), or is idle again, bound to its handler or not. */
  #takeVerdict(verdict: ThreadVerdict): void {
    // A thread that reported its own death and goes on did not die: plugin code posted those (or
    // made its runtime send them: process.emit('exit')), to be blamed on another handler's crash.
    if (this.reports.length > 0 && !verdict.retire) return this.#violate('crash reports from a thread that then went on working');
    this.bound = verdict.bound === true;
    if (verdict.retire && verdict.reaping) this.#endOnceReaped({ kind: 'retired', reason: verdict.retire });
    else if (verdict.retire) this.end({ kind: 'retired', reason: verdict.retire });
    // One the host is ending (its execution's time ran out as it answered) takes nothing more.
    else if (this.alive && this.endedBy === undefined) this.#events.idle(this);
  }

  /** Its channel closed while it runs on (plugin code closed its end): ended, as a child that closes its pipe is. Looked at a moment later: a thread that exits closes it first. */
  #onChannelClosed(): void {
    setTimeout(() => {
      if (this.alive && this.endedBy === undefined) this.#violate('its channel to the host was closed by plugin code that ran on it (this execution or an earlier one), so nothing it sends can arrive');
    }, CHANNEL_CLOSED_GRACE_MS).unref();
  }

  /** An unpaced message (answer, verdict, reaped) not waited for, which a loop would pile up in the host: it ends a thread in service (one on its way out goes soon). */
  #forged(what: string): void {
    if (this.endedBy === undefined) this.#violate(`${what} its runtime did not send (${FORGED})`);
  }

  /** It sent what the pool's runner never sends (plugin code on its port): ended, and its execution fails WORKER_CRASHED `protocol`. */
  #violate(problem: string): void {
    this.protocolError = problem;
    this.end({ kind: 'terminated' });
  }

  #read(units: number): void {
    if (this.#pacer.holding) this.#unread += units;
    else markRead(this.#wake!, units);
  }

  /**
   * A message from the thread could not be read here (nested deeper than this thread's stack
   * lets it rebuild: a thread's stack is larger). Lost, it may have been the answer, and what it
   * weighed is never counted as read: the execution fails, and the thread, which can no longer be
   * trusted to be in step, is ended.
   */
  #unreadable(error: Error): void {
    const execution = this.release();
    this.end({ kind: 'terminated' });
    execution?.reject(unreadableMessageError('A message the handler sent (its result, an event, a log line or a call)', 'by the host', error));
  }

  /** BaseBackend stopped the running execution: the caller's abort gets a grace period (within its time limit), anything else ends the thread now. */
  #stop(reason: ExecutionError): void {
    const execution = this.execution;
    if (!execution) return;
    execution.stop = reason;
    this.#pacer.release(); // its output reaches no one now: held at its next message, the handler could not see ctx.signal in its grace
    // A handler whose modules still load never starts, whatever grace an abort gives the running one.
    Atomics.store(this.#wake!, STOPPED, execution.k | 0);
    const graceMs = reason.code === 'ABORTED' ? execution.control.abortGraceMs(this.#cancelGraceMs) : 0;
    if (graceMs > 0) {
      // ctx.signal fires in the thread; a handler that honours it answers and keeps its thread.
      this.port!.postMessage({ k: execution.k, m: { type: 'cancel', reason: serializeErrorForRunner(reason, 'the host') } } satisfies HostToThread);
      this.#graceTimer = setTimeout(() => this.#endOnceLoaded(), graceMs);
    } else {
      this.#endOnceLoaded();
    }
  }

  /** End it once it is not loading a handler's modules (LOADING), LOAD_WAIT_MS at most: ended mid-read, a thread leaves the loader's descriptors open in the host for good. */
  #endOnceLoaded(): void {
    // STOPPED was said before this look at LOADING (#stop): a thread whose load ends after it
    // answers without running the handler, and keeps going (an import its modules started and
    // did not await reads on); one whose load ended before it is ended now.
    const stopped = this.execution;
    const loaded = loadEnded(this.#wake!);
    if (!loaded) return this.end({ kind: 'terminated' });
    // Ref'd: the executions queued behind this one have no timer of their own yet to keep the host up. Cleared once the thread is gone (one that dies loading never says its load ended).
    this.#loadTimer = setTimeout(() => undefined, LOAD_WAIT_MS + ANSWER_WITHIN_MS);
    void loaded.then(() => {
      clearTimeout(this.#loadTimer);
      // Its answer comes right after the load: ended only if it has not answered by then (one gone meanwhile is left alone).
      if (this.alive) this.#loadTimer = setTimeout(() => this.execution === stopped && this.end({ kind: 'terminated' }), ANSWER_WITHIN_MS);
    });
  }
}
