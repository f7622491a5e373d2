import { MessageChannel, Worker } from 'node:worker_threads';
import { TimeoutError, serializeError } from '@kb-labs/plugin-execution-core';
import { printableJson } from './printable-json.js';

/** How long past its time limit a handler may keep the loop blocked before the process is ended. */
export const BLOCKED_GRACE_MS = 2000;
/** How often the loop says it turns. */
const BEAT_MS = 100;

export interface LoopWatchdogOptions {
  pluginId: string;
  handlerId: string;
  /** The execution's time limit. */
  limitMs: number;
  /** --json: the result goes to stdout as JSON too. */
  json: boolean;
}

export interface LoopWatchdog {
  /**
   * The execution was handed to its runner: from now on a blocked loop counts against its time
   * limit (what the host did before, copying a large input, does not). `dirs`: its workspace, to
   * remove if the process is ended, or to name as kept.
   */
  started(dirs: readonly string[], keep: boolean): void;
  stop(): void;
}

/**
 * For `run` on the in-process backend: a handler that blocks the event loop (`while (true) {}`)
 * is out of reach of its time limit and of the CLI's SIGINT and SIGTERM listeners, which all run
 * on that loop. A thread of its own watches the loop's beat: blocked past the time limit and
 * BLOCKED_GRACE_MS, the thread says so (TIMEOUT, as a worker-pool run would), removes the
 * execution's workspace, and ends the process with SIGKILL, the one way no blocked listener holds
 * back (exit status 137). It never ends a loop that turns, however long the handler takes. Where
 * no thread can be started (Node's permission model without --allow-worker), nothing watches.
 */
export function watchLoop(options: LoopWatchdogOptions): LoopWatchdog {
  // [0] the loop's beat, [1] 1 once stopped.
  const state = new Int32Array(new SharedArrayBuffer(8));
  const beat = setInterval(() => Atomics.add(state, 0, 1), BEAT_MS);
  beat.unref();
  const { port1, port2 } = new MessageChannel();
  const said = blockedNotice(options);
  const workerData = { state: state.buffer, port: port2, blockedMs: options.limitMs + BLOCKED_GRACE_MS, ...said };
  let worker: Worker;
  try {
    worker = new Worker(WATCHER, { eval: true, workerData, transferList: [port2], env: {} });
  } catch {
    clearInterval(beat);
    port1.close();
    return { started: () => undefined, stop: () => undefined };
  }
  // Should it fail, the run goes on unwatched, as where no thread can be started.
  worker.on('error', () => undefined);
  worker.unref();
  port1.unref();
  return {
    started: (dirs, keep) => port1.postMessage({ dirs: [...dirs], keep }),
    stop: () => {
      clearInterval(beat);
      Atomics.store(state, 1, 1);
      Atomics.notify(state, 1);
      port1.close();
    },
  };
}

/** What is said as the process is ended: the TIMEOUT, on stderr, and as the --json result on stdout. */
function blockedNotice({ pluginId, handlerId, limitMs, json }: LoopWatchdogOptions): { stderr: string; stdout?: string } {
  const message =
    `Handler "${handlerId}" of plugin "${pluginId}" did not finish within ${limitMs} ms and keeps the event loop blocked, ` +
    'which the in-process backend cannot stop: the process was ended (--backend worker-pool or subprocess stops such a handler)';
  const error = new TimeoutError(message, { details: { timeoutMs: limitMs } });
  // Its stack would show the CLI's own frames, where the handler was never seen.
  const { stack: _stack, ...wire } = serializeError(error);
  const stdout = json ? `${printableJson({ ok: false, error: wire, meta: { backend: 'in-process', pluginId, handlerId } }, 2)}\n` : undefined;
  return { stderr: `TIMEOUT: ${message}\n`, ...(stdout !== undefined ? { stdout } : {}) };
}

/** The watching thread (CommonJS, evaluated): wakes every BEAT_MS × 2 and reads the beat. */
const WATCHER = `
const fs = require('node:fs');
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { port, blockedMs, stderr, stdout } = workerData;
const state = new Int32Array(workerData.state);
let last = Atomics.load(state, 0);
let since = Date.now();
let started;
while (Atomics.wait(state, 1, 0, ${BEAT_MS * 2}) === 'timed-out') {
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) started = { ...m.message, at: Date.now() };
  const now = Atomics.load(state, 0);
  if (now !== last) {
    last = now;
    since = Date.now();
  } else if (started && Date.now() - Math.max(since, started.at) >= blockedMs && Atomics.load(state, 1) === 0) {
    let kept = '';
    for (const dir of started.dirs) {
      if (started.keep) kept += 'workspace kept at ' + dir + '\\n';
      else try { fs.rmSync(dir, { recursive: true, force: true }); } catch {}
    }
    try { if (stdout !== undefined) fs.writeSync(1, stdout); } catch {}
    try { fs.writeSync(2, stderr + kept); } catch {}
    process.kill(process.pid, 'SIGKILL');
  }
}
`;
