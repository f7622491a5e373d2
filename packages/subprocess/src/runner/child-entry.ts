/**
 * The child process: boots without any plugin code (so it can wait as a warm spare), says
 * `ready` on fd 3, takes exactly one `run`, runs it through core's RunnerSession, answers with
 * one `result` and waits to be discarded. Core's runner entry is bundled into this script at
 * build time: the main entry's zod schemas would add ~60 ms to every start, and resolving a
 * package through node_modules another ~2 ms.
 */
import { closeSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import v8 from 'node:v8';
import {
  PermissionDeniedError,
  PROTOCOL_VERSION,
  RunnerSession,
  TimeoutError,
  deserializeError,
  refuseWhatCloneRefuses,
  serializeError,
  unreadableMessageError,
  type RunnerResult,
  type SerializedError,
} from '@kb-labs/plugin-execution-core/runner';
import { DEFAULT_MAX_FRAME_BYTES, FramedChannel, UnreadableFrame, encodeFrame } from '../framing.js';
import { EXIT_CHANNEL_CLOSED, type ChildCrashMessage, type ChildRunMessage, type ChildStoppedItselfMessage, type HostToChild } from '../messages.js';
import { resultStandIns } from './result-stand-ins.js';
import { refuseInspectorSignals } from './inspector-signal.js';

/** Exit code of the child's own failures (distinct from a handler's process.exit); EXIT_CHANNEL_CLOSED is another. */
const EXIT_PROTOCOL = 70;
/** How long past its time limit (counted here, from its start) a child whose host did not stop it cancels its handler; and how long after that it exits. */
const BACKSTOP_AFTER_MS = 2000;
const BACKSTOP_GRACE_MS = 1000;
/** The largest crash report written on the way out (an error with a huge message or props is not worth blocking on). */
const MAX_CRASH_FRAME_BYTES = 64 * 1024;

const maxFrameBytes = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : DEFAULT_MAX_FRAME_BYTES;
// Captured before any plugin code runs: a handler may replace process.exit, not our exit path.
const exit = process.exit.bind(process);
// One no 'exit' listener nor a replaced process.reallyExit can hold up (the stop past the time limit).
const signal = process.kill.bind(process);
const hostPid = process.ppid;
/** How long after its channel closes the child looks whether its host is gone (then reparented) or closed nothing. */
const HOST_GONE_LOOK_MS = 50;

// Node 20's permission model does not check where process.report writes (22 and later refuse
// it): a plugin could truncate and write any file the host's user may. Closed there.
if ((process as { permission?: unknown }).permission !== undefined && Number(process.versions.node.split('.')[0]) < 22) {
  Object.defineProperty(process, 'report', {
    enumerable: true,
    get() {
      const message = 'process.report is not available to a plugin on Node 20 (the permission model does not check the files it writes)';
      throw Object.assign(new Error(message), { code: 'ERR_ACCESS_DENIED', permission: 'FileSystemWrite', resource: 'process.report' });
    },
  });
}

// V8's own flags open files that no permission model checks, on every Node: set at run time,
// `--redirect-code-traces-to=<file>` with `--trace-deopt` truncates and writes any file the
// host's user may (`--trace-turbo-cfg-file`, `--logfile` and others alike). Closed under the model.
if ((process as { permission?: unknown }).permission !== undefined) {
  Object.defineProperty(v8, 'setFlagsFromString', {
    enumerable: true,
    writable: false,
    configurable: false,
    value: function setFlagsFromString(): never {
      const message = "v8.setFlagsFromString is not available to a plugin (V8's flags open files the permission model does not check)";
      throw Object.assign(new Error(message), { code: 'ERR_ACCESS_DENIED', permission: 'FileSystemWrite', resource: 'v8.setFlagsFromString' });
    },
  });
  // `import { setFlagsFromString } from 'node:v8'` sees the same.
  syncBuiltinESMExports();
  // SIGUSR1 opens another Node process's inspector: the host's, reached then over its loopback (inspector-signal.ts).
  refuseInspectorSignals();
}

// bubblewrap sets PWD in the sandbox; the environment is the host's allow-list and nothing else.
if (process.argv[4] === 'sandboxed') delete process.env.PWD;

// A host run with source maps on (`--enable-source-maps`, in its command line or NODE_OPTIONS)
// has its in-process and worker-pool handlers' stacks name their sources (a TypeScript build's
// `src/run.ts:11`): so do a child's. Turned on here, after the runtime loaded, so that only the
// plugin's modules have their maps read (the flag would read this script's too, at every start).
if (process.argv[5] === 'source-maps') process.setSourceMapsEnabled(true);

// Descriptors the host inherited without close-on-exec and passed on (argv[3], "5,9"): closed
// before any plugin code can use them.
for (const fd of (process.argv[3] ?? '').split(',')) {
  if (!/^\d+$/.test(fd) || Number(fd) <= 3) continue;
  try {
    closeSync(Number(fd));
  } catch {
    // Not open here.
  }
}

let session: RunnerSession | undefined;
/** This child stopped its handler at its time limit itself, its host not there to (stopPastTimeLimit). */
let stoppedPastLimit = false;
let started = false;
/** The result, decided while stdout and stderr drain (start): not sent yet. */
let unsent: RunnerResult | undefined;
const early: Array<Extract<HostToChild, { type: 'cancel' | 'rpc-reply' | 'begin' }>> = [];

const channel = new FramedChannel(new net.Socket({ fd: 3, readable: true, writable: true }), {
  maxFrameBytes,
  // Synchronous, as stdout and stderr are on POSIX: a handler that emits faster than the host
  // reads waits. Not on Windows, where libuv's pipe is an overlapped handle, this backend is not
  // tested, and a synchronous write to it is not known to work: writes are queued there.
  ...(process.platform === 'win32' ? {} : { writeFd: 3 }),
  onMessage: (message) => {
    if (message instanceof UnreadableFrame) return void booted.then(() => answerUnreadable(message));
    const m = message as HostToChild;
    if (!started) {
      started = true;
      // A cold child's `run` is sent right behind the spawn; it waits until `ready` is out.
      if (m?.type !== 'run') exit(EXIT_PROTOCOL);
      else void booted.then(() => start(m));
      return;
    }
    if (m?.type !== 'cancel' && m?.type !== 'rpc-reply' && m?.type !== 'begin') return;
    // A cancel can overtake the start (abort right after the spawn): it is handed over then.
    if (session) session.handle(m);
    else early.push(m);
  },
  onProtocolError: (error) => {
    // On stderr, which the host keeps the end of for the crash it reports.
    const why = /stopped reading/.test(error.message)
      ? `the handler sent logs, events or calls faster than the host read them (${error.message}), so its process stopped`
      : `the host's messages broke the protocol (${error.message})`;
    try {
      writeSync(2, `[plugin-execution] ${why}\n`);
    } catch {
      // stderr is full or gone: the exit code still says it was this.
    }
    exit(EXIT_PROTOCOL);
  },
  // The host closed the pipe or died (nobody is waiting for this child any more), or the plugin closed fd 3.
  onClose: () => setTimeout(() => (process.ppid !== hostPid ? killOwnGroup() : exit(EXIT_CHANNEL_CLOSED)), HOST_GONE_LOOK_MS),
});

// An error outside the handler's promise ends this process (Node prints it and exits with 1);
// first the host is told which, as a worker thread tells it (the channel writes at once). A
// handler that installed its own 'uncaughtException' listener keeps the process: no report.
const listenerCount = process.listenerCount.bind(process);
process.on('uncaughtExceptionMonitor', (error, origin) => {
  if (listenerCount('uncaughtException') > 0) return;
  const crash: ChildCrashMessage = { type: 'crash', reason: origin === 'unhandledRejection' ? 'unhandled-rejection' : 'uncaught-exception', error: serializeError(error) };
  try {
    channel.sendFrame(encodeFrame(crash, MAX_CRASH_FRAME_BYTES));
  } catch {
    // Too large to be worth it: the exit code and stderr still say it.
  }
});

// A callback the handler left that ends the process (process.exit, an uncaught throw) while its
// output drains still finds its result decided: sent now (the channel writes at once), as a
// thread's result is posted before such a callback runs, not lost for "exited before a result".
process.on('exit', () => {
  if (unsent !== undefined && !stoppedPastLimit) sendResult(unsent);
  unsent = undefined;
});

const booted = import(new URL('./warmup.js', import.meta.url).href)
  .catch(() => {
    // Only a start-up optimisation; the handler import brings the loader up otherwise.
  })
  .then(() => channel.send({ type: 'ready', version: PROTOCOL_VERSION, pid: process.pid }));

async function start(message: ChildRunMessage): Promise<void> {
  const { task } = message;
  for (const [name, value] of Object.entries(message.env ?? {})) process.env[name] = value;
  if (task.workspaceDir) {
    try {
      process.chdir(task.workspaceDir);
    } catch {
      // A warm spare was started elsewhere; the handler still gets ctx.workspace.dir.
    }
  }
  session = new RunnerSession(task, (m) => {
    refuseWhatCloneRefuses(m);
    channel.send(m);
  });
  stopPastTimeLimit(task, session);
  const running = session.run();
  for (const m of early.splice(0)) session.handle(m);
  const result = accessDeniedAsPermission(await running, task);
  unsent = result;
  // The host stops reading stdout and stderr soon after the result: hand them to the OS first
  // (they are asynchronous pipes on some platforms, Linux's too once the host is behind).
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  unsent = undefined;
  // And close them: the host settles the execution once both have ended, so that no line written
  // before the result can be read after it; closed here, they end now rather than when the
  // kernel has torn this process down after the host's SIGKILL.
  closeOutput();
  // Stopped by its own time limit, its host not there to: no result goes, whatever the handler made
  // of its cancel (an AbortError thrown, a value returned), which the host would take for its answer
  // (HANDLER_ERROR). Told so, the host reports its own TIMEOUT once it runs.
  if (stoppedPastLimit) return;
  sendResult(result);
  // Stay alive: the host kills this child (and its process group) once it has the result.
}

/** The result, or, when it cannot go whole (past maxFrameBytes, or not clonable), the first of its stand-ins that fits. */
function sendResult(result: RunnerResult): void {
  try {
    refuseWhatCloneRefuses(result);
    return void channel.send(result);
  } catch (error) {
    for (const standIn of resultStandIns(result, error)) {
      try {
        return void channel.send(standIn);
      } catch {
        // Still past maxFrameBytes: the next, smaller one.
      }
    }
  }
}

/**
 * The host stops a child at its time limit. One whose host cannot (stopped by SIGSTOP, a queue
 * worker frozen, its VM paused) would run on for as long as that lasts: BACKSTOP_AFTER_MS past
 * the limit the child cancels its handler itself (ctx.signal, TIMEOUT), and exits
 * BACKSTOP_GRACE_MS later (SIGKILL: no listener of the handler's holds it up). Not a handler that
 * blocks this thread (a synchronous loop): no timer runs then.
 */
function stopPastTimeLimit(task: ChildRunMessage['task'], running: RunnerSession): void {
  if (!(task.timeoutMs > 0) || task.timeoutMs + BACKSTOP_AFTER_MS > 2 ** 31 - 1) return;
  setTimeout(() => {
    const reason = new TimeoutError(`Handler "${task.handlerId}" of plugin "${task.pluginId}" did not finish within ${task.timeoutMs} ms, and its host did not stop it: its process stopped itself`, {
      details: { pluginId: task.pluginId, handlerId: task.handlerId, timeoutMs: task.timeoutMs },
    });
    stoppedPastLimit = true;
    channel.send({ type: 'stopped-itself' } satisfies ChildStoppedItselfMessage);
    running.handle({ type: 'cancel', reason: serializeError(reason) });
    setTimeout(killOwnGroup, BACKSTOP_GRACE_MS).unref();
  }, task.timeoutMs + BACKSTOP_AFTER_MS).unref();
}

/**
 * This child and what it started: where the host cannot (it died, so it never kills the child's
 * process group; it is stopped, past the time limit). Unsandboxed, the child leads a process group
 * of its own (child-runner.ts), so the processes a handler started (bar `setsid` ones) go with it;
 * itself alone where it leads none. Sandboxed, its pid namespace takes the rest in any case.
 */
function killOwnGroup(): void {
  try {
    signal(-process.pid, 'SIGKILL');
  } catch {
    signal(process.pid, 'SIGKILL');
  }
}

/**
 * A message from the host too deep to rebuild here (the run with its input, a platform call's
 * answer): the execution's answer is VALIDATION_ERROR saying so; the host discards this child.
 */
function answerUnreadable(frame: UnreadableFrame): void {
  started = true;
  const error = unreadableMessageError("A message the host sent (the input, a platform call's answer, a channel message or a cancel)", "in the handler's process", frame.error);
  channel.send({ type: 'result', ok: false, error: serializeError(error) });
}

function closeOutput(): void {
  for (const fd of [1, 2]) {
    try {
      closeSync(fd);
    } catch {
      // Already closed by the handler.
    }
  }
}

function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => stream.write('', () => resolve()));
}

const PERMISSION_NAMES: Record<string, (resource: string) => string> = {
  FileSystemRead: (r) => `fs.read:${r}`,
  FileSystemWrite: (r) => `fs.write:${r}`,
  ChildProcess: () => 'childProcess',
  WorkerThreads: () => 'worker',
  Addon: () => 'addon',
};

/** What a child never gets, whatever its manifest declares (docs/backends/subprocess.md, Permissions): said so, not "not within what its manifest declares". */
const NEVER_GRANTED: Record<string, string> = {
  Addon: 'load a native addon (a .node file)',
  WASI: 'use WASI (node:wasi)',
  Inspector: "open Node's inspector",
};

/**
 * Node's permission model throws ERR_ACCESS_DENIED (with `permission` and `resource`) for a
 * blocked call, and ERR_DLOPEN_DISABLED (with neither) for a native addon (`require('./x.node')`,
 * `process.dlopen`). The runtime reports either as the handler's own error; the API promises
 * PERMISSION_DENIED naming the resource, with the original kept as the cause.
 */
function accessDeniedAsPermission(result: RunnerResult, task: ChildRunMessage['task']): RunnerResult {
  if (result.ok) return result;
  const denied = findAccessDenied(result.error);
  if (!denied) return result;
  const path = typeof denied.props?.resource === 'string' ? denied.props.resource : '';
  let permission = denied.code === 'ERR_DLOPEN_DISABLED' ? 'Addon' : typeof denied.props?.permission === 'string' ? denied.props.permission : '';
  // Some calls are refused as a whole ("fs.symlink API requires full fs.read and fs.write
  // permissions"), with no permission or resource set: name the API instead.
  if (!permission) permission = /^(\S+) API requires/.exec(denied.message)?.[1] ?? 'unknown';
  const resource = (PERMISSION_NAMES[permission] ?? ((r: string) => (r ? `${permission}:${r}` : permission)))(path);
  const never = NEVER_GRANTED[permission];
  const why = never
    ? `the subprocess backend lets no child ${never}, whatever the manifest declares; run the plugin on another backend`
    : 'not within what its manifest declares (its plugin folder, its workspace, and its fs, childProcess and env permissions)';
  const error = new PermissionDeniedError(`Handler "${task.handlerId}" of plugin "${task.pluginId}" was denied ${resource}: ${why}`, {
    details: { pluginId: task.pluginId, handlerId: task.handlerId, resource, permission, ...(path ? { path } : {}), phase: 'runtime' },
    cause: result.error.cause && 'message' in result.error.cause ? deserializeError(result.error.cause) : deserializeError(result.error),
  });
  return { type: 'result', ok: false, error: serializeError(error) };
}

function findAccessDenied(error: SerializedError | undefined, depth = 0): SerializedError | undefined {
  if (!error || depth > 8) return undefined;
  if (error.code === 'ERR_ACCESS_DENIED' || error.code === 'ERR_DLOPEN_DISABLED') return error;
  const cause = error.cause;
  return cause && '$error' in cause ? findAccessDenied(cause, depth + 1) : undefined;
}
