import { MessageChannel, Worker } from 'node:worker_threads';
import { TimeoutError, serializeError } from '@kb-labs/plugin-execution-core';
import { printableJson } from './printable-json.js';
import { printableText } from './terminal-text.js';

/** How long past its time limit a handler may keep the loop blocked before the process is ended. */
export const BLOCKED_GRACE_MS = 2000;
/** How often the loop says it turns. */
const BEAT_MS = 100;
/**
 * Milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC), which every thread of the
 * process reads alike: how long the loop was blocked, and the durations said, never move with a
 * wall clock that steps (an NTP step, `date -s`, a resumed VM). Taken before any handler runs.
 */
const { bigint: monotonicNanos } = process.hrtime;
const monotonicMs = (): number => Number(monotonicNanos()) / 1e6;

export interface LoopWatchdogOptions {
  executionId: string;
  pluginId: string;
  handlerId: string;
  /** The execution's time limit. */
  limitMs: number;
  /** --json: the result goes to stdout as JSON too. */
  json: boolean;
  /** What else goes to stdout as the process is ended: `validate`'s report of the plugins checked, this one's TIMEOUT with them. */
  stdout?: string;
}

export interface LoopWatchdog {
  /**
   * The execution was handed to its runner: from now on a blocked loop counts against its time
   * limit (what the host did before, copying a large input, does not). `dirs`: its workspace, to
   * remove if the process is ended, or to name as kept.
   */
  started(dirs: readonly string[], keep: boolean): void;
  /** The handler is over: what blocks the loop now (printing a large result) is the CLI's own work. */
  returned(): void;
  /**
   * The CLI shuts down: a timer or callback the handler left that blocks the loop from now on for
   * BLOCKED_GRACE_MS would hang the command after its result. Watched until the process exits.
   */
  closing(dirs: readonly string[], keep: boolean): void;
  /** Nothing more to watch, the process going on to other work (`validate`, one handler after another): the thread ends. */
  stop(): void;
}

/**
 * For `run` on the in-process backend: a handler that blocks the event loop (`while (true) {}`)
 * is out of reach of its time limit and of the CLI's SIGINT and SIGTERM listeners, which all run
 * on that loop. A thread of its own watches the loop's beat: blocked past the time limit and
 * BLOCKED_GRACE_MS, the thread says so (TIMEOUT, as a worker-pool run would), removes the
 * execution's workspace, and ends the process with SIGKILL, the one way no blocked listener holds
 * back (exit status 137). The same once the CLI shuts down, for what the handler left running. It
 * never ends a loop that turns, however long the handler takes. Where no thread can be started
 * (Node's permission model without --allow-worker), nothing watches.
 */
export function watchLoop(options: LoopWatchdogOptions): LoopWatchdog {
  // The execution is called right after this: its meta.startedAt, as the backend would say it.
  const calledAt = { startedAt: Date.now(), at: monotonicMs() };
  // [0] the loop's beat, [1] 1 while the CLI's own work runs (not watched).
  const state = new Int32Array(new SharedArrayBuffer(8));
  const beat = setInterval(() => Atomics.add(state, 0, 1), BEAT_MS);
  beat.unref();
  const { port1, port2 } = new MessageChannel();
  let worker: Worker;
  try {
    worker = new Worker(WATCHER, { eval: true, workerData: { state: state.buffer, port: port2 }, transferList: [port2], env: {} });
  } catch {
    clearInterval(beat);
    port1.close();
    return { started: () => undefined, returned: () => undefined, closing: () => undefined, stop: () => undefined };
  }
  // Should it fail, the run goes on unwatched, as where no thread can be started.
  worker.on('error', () => undefined);
  worker.unref();
  port1.unref();
  // Said first, then unpaused: the thread reads the pause before the message it comes with.
  const arm = (watch: Watch) => {
    port1.postMessage(watch);
    Atomics.store(state, 1, 0);
  };
  return {
    started: (dirs, keep) => arm({ dirs: [...dirs], keep, kept: keptNotice(dirs, keep), blockedMs: options.limitMs + BLOCKED_GRACE_MS, ...blockedNotice(options, keep ? dirs[0] : undefined, calledAt) }),
    returned: () => Atomics.store(state, 1, 1),
    closing: (dirs, keep) => arm({ dirs: [...dirs], keep, kept: keptNotice(dirs, keep), blockedMs: BLOCKED_GRACE_MS, stderr: leftoverNotice(options) }),
    stop: () => {
      clearInterval(beat);
      port1.close();
      void worker.terminate();
    },
  };
}

/**
 * What the watching thread is told: how long a blocked loop may last, what to remove or name, what
 * to say; `result`, the --json result to print, whose meta's `durationMs` and `runMs` it sets then
 * (`runFrom`: when the runner took the execution, on the monotonic clock, monotonicMs).
 */
interface Watch {
  dirs: string[];
  keep: boolean;
  /** The `workspace kept at` lines, written out here: the thread prints it as it is. */
  kept: string;
  blockedMs: number;
  stderr: string;
  stdout?: string;
  result?: { meta: Record<string, unknown> };
  runFrom?: number;
}

/** What is said as the process is ended: the TIMEOUT, on stderr, and as the --json result on stdout. */
function blockedNotice(options: LoopWatchdogOptions, workspaceDir: string | undefined, calledAt: { startedAt: number; at: number }): Pick<Watch, 'stderr' | 'stdout' | 'result' | 'runFrom'> {
  const { executionId, pluginId, handlerId, limitMs, json } = options;
  const message =
    // Not "did not finish": a timer it left may block the loop after it returned, before its result is in.
    `Handler "${handlerId}" of plugin "${pluginId}" keeps the event loop blocked past its time limit of ${limitMs} ms, ` +
    'which the in-process backend cannot stop: the process was ended (--backend worker-pool or subprocess stops such a handler)';
  // The details and meta a TIMEOUT of the backend's own has (docs/errors.md), as far as the thread can know them.
  const error = new TimeoutError(message, { details: { timeoutMs: limitMs, pluginId, handlerId } });
  // Its stack would show the CLI's own frames, where the handler was never seen.
  const { stack: _stack, ...wire } = serializeError(error);
  const runFrom = monotonicMs();
  // Every field a result's meta has (ExecutionMeta), in its order; the durations are set as the process is ended.
  const meta = { executionId, backend: 'in-process', pluginId, handlerId, startedAt: calledAt.startedAt, durationMs: 0, queueWaitMs: Math.round(runFrom - calledAt.at), runMs: 0, timeoutMs: limitMs, ...(workspaceDir !== undefined ? { workspaceDir } : {}), artifacts: [] };
  // Through printableJson now: the thread prints it with JSON.stringify, which gives the same for these fields.
  const result = json ? (JSON.parse(printableJson({ ok: false, error: wire, meta })) as Watch['result']) : undefined;
  return { stderr: `TIMEOUT: ${message}\n`, ...(options.stdout !== undefined ? { stdout: options.stdout } : {}), ...(result !== undefined ? { result, runFrom } : {}) };
}

/** What is said of `dirs` kept (--keep-workspace), each path as the CLI prints one (printableText): a control character in it is written out, not sent to the terminal. */
function keptNotice(dirs: readonly string[], keep: boolean): string {
  return keep ? dirs.map((dir) => `workspace kept at ${printableText(dir)}\n`).join('') : '';
}

/** What is said when what a handler left running blocks the loop after its result (printed already). */
function leftoverNotice({ pluginId, handlerId }: LoopWatchdogOptions): string {
  return (
    `ERROR: handler "${handlerId}" of plugin "${pluginId}" is over (its result is said), but a timer or callback it left keeps the event loop blocked ` +
    `(over ${BLOCKED_GRACE_MS} ms) as the command ends: the process was ended\n`
  );
}

/**
 * How much longer than asked the watching thread may sleep before that is taken for the whole
 * process stopped (SIGSTOP, Ctrl-Z, a container frozen), not for a loop the handler blocks.
 */
const STOPPED_AFTER_MS = 1000;

/**
 * The watching thread (CommonJS, evaluated): wakes every BEAT_MS × 2 and reads the beat. Its times
 * are the monotonic clock's (monotonicMs), as the main thread's `runFrom` is. A wake far later than
 * asked is left out of the time blocked: this thread did not run either (the process was stopped),
 * so the loop could not beat, and a resumed process whose loop turns is not ended as blocked.
 */
const WATCHER = `
const fs = require('node:fs');
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { port } = workerData;
const state = new Int32Array(workerData.state);
const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;
let last = Atomics.load(state, 0);
let since = monotonicMs();
let woke = since;
let watch;
for (;;) {
  Atomics.wait(state, 0, last, ${BEAT_MS * 2});
  const awake = monotonicMs();
  const overslept = awake - woke - ${BEAT_MS * 2};
  woke = awake;
  if (overslept > ${STOPPED_AFTER_MS}) {
    since += overslept;
    if (watch) watch.at += overslept;
  }
  const paused = Atomics.load(state, 1) === 1;
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) watch = { ...m.message, at: monotonicMs() };
  const now = Atomics.load(state, 0);
  if (now !== last || paused) {
    last = now;
    since = monotonicMs();
  } else if (watch && monotonicMs() - Math.max(since, watch.at) >= watch.blockedMs) {
    if (!watch.keep) for (const dir of watch.dirs) try { fs.rmSync(dir, { recursive: true, force: true }); } catch {}
    if (watch.stdout !== undefined) try { fs.writeSync(1, watch.stdout); } catch {}
    if (watch.result !== undefined) {
      watch.result.meta.runMs = Math.round(monotonicMs() - watch.runFrom);
      watch.result.meta.durationMs = watch.result.meta.queueWaitMs + watch.result.meta.runMs;
      try { fs.writeSync(1, JSON.stringify(watch.result, null, 2) + '\\n'); } catch {}
    }
    try { fs.writeSync(2, watch.stderr + watch.kept); } catch {}
    process.kill(process.pid, 'SIGKILL');
  }
}
`;
