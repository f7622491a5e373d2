import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { PermissionSpec } from '@kb-labs/plugin-execution-core';
import { MAX_TIMER_MS, nearest } from '@kb-labs/plugin-execution-core/host-kit';
import { printVersion } from './cli-version.js';
import { flagMistake, givenFlags } from './flag-errors.js';
import { guardWorkerExit, removeLiveWorkspaces } from './exit-guard.js';
import { emptyFlag, emptyFlagMessage, joinNegativeValues, repeatedFlagMessage, unexpandedHomeMessage } from './flag-values.js';
import { NATS_FLAGS, NATS_FLAGS_USAGE, NatsFlagError, forgetNatsVariables, natsAuth, natsServers } from './nats-flags.js';
import { pluginFolderMistake } from './plugin-folders.js';
import { StoppedWhileReading, readGrant } from './run-command.js';
import { startExecutionWorker, type ExecutionWorker, type LocalBackendType } from './start-execution-worker.js';
import { SIGNAL_EXIT, endProcess, onStopSignals, type StopSignal } from './stop-signals.js';

export const WORKER_USAGE = `Usage:
  kb-plugin-exec worker --nats <url> --plugins <dir> [<dir> …] [options]

Runs a queue worker: takes executions of its pool from NATS JetStream and runs them on a local
backend. Prints "ready <worker id>" once it takes work. On SIGTERM, SIGINT or SIGHUP it drains (and says so): takes
nothing new, lets what runs finish (up to --drain-timeout, then stops it), and exits 0 (1 if its
standard output failed meanwhile: "ERROR: standard output could not take …"); after a SIGHUP
(its terminal closed) it ends by that signal instead, once done (129 in a shell). A second
signal stops what runs at once (its callers get WORKER_CRASHED) and exits 130 (SIGINT), 143
(SIGTERM) or 129 (SIGHUP); a third exits at once. A handler that ends the process (--backend in-process:
process.exit, an uncaught exception) ends the worker: exit 1, "WORKER_CRASHED: …" on stderr.
Exits 2 for a usage error, and 1 when it cannot start: "<CODE>: <message>" on stderr, where a
NATS server it cannot use is QUEUE_SERVER_UNREACHABLE, QUEUE_SERVER_AUTH_FAILED,
QUEUE_SERVER_NO_JETSTREAM, QUEUE_SERVER_NOT_PERMITTED, QUEUE_SERVER_LIMIT_REACHED or
QUEUE_SERVER_MISCONFIGURED (a plugin it cannot load: VALIDATION_ERROR …; a --plugins folder
that does not exist or has no kb.plugin.json is a usage error).

Options for worker:
  --nats <url>              NATS server URL(s), comma-separated      (required)
  --plugins <dir>           a plugin folder; repeat it, or list more folders after it
  --backend <type>          in-process | worker-pool | subprocess    (default: worker-pool)
  --concurrency <n>         executions at once, 1 to 10000           (default: CPU count)
  --pool <name>             the pool to serve                        (default: default)
  --prefix <subjects>       subject prefix, as the hosts set it      (default: kbexec)
  --workspace-root <dir>    where execution directories go  (default: <OS temp dir>/kb-plugin-workspaces-<uid>)
  --id <id>                 this worker's id in the pool             (default: host-pid-random)
  --drain-timeout <ms>      how long a drain waits for running work, 0 to 2147483647
                                                                     (default: 30000)
  --grant <json|@file|@->   the most handlers are granted here (the worker's cap), whatever
                            a host grants         (default: everything its plugins declare)
  --max-payload-bytes <n>   the largest input, result, log line or event, as the pool's hosts
                            set it, 1024 to 1073741824           (default: 20971520, 20 MiB)
  --version                 print the version
  -h, --help                show this help
${NATS_FLAGS_USAGE}`;

/** Thrown for a command line that cannot be run: the caller prints it with the usage, exit code 2. */
export class WorkerUsageError extends Error {}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // Digits only: Number() would also take " 2", 3.0, 0x10, 1e1 and +3.
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new WorkerUsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `--drain-timeout`: what `worker.drain({ timeoutMs })` takes, a whole number of ms that a timer can wait. */
function drainTimeout(value: string | undefined): number {
  if (value === undefined) return 30_000;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > MAX_TIMER_MS) throw new WorkerUsageError(`--drain-timeout must be a whole number of ms from 0 to ${MAX_TIMER_MS}, got ${JSON.stringify(value)}`);
  return n;
}

export const WORKER_OPTIONS = {
  nats: { type: 'string' },
  plugins: { type: 'string', multiple: true },
  backend: { type: 'string' },
  concurrency: { type: 'string' },
  pool: { type: 'string' },
  prefix: { type: 'string' },
  'workspace-root': { type: 'string' },
  id: { type: 'string' },
  'drain-timeout': { type: 'string' },
  grant: { type: 'string' },
  'max-payload-bytes': { type: 'string' },
  ...NATS_FLAGS,
  version: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const LOCAL_BACKENDS: readonly LocalBackendType[] = ['in-process', 'worker-pool', 'subprocess'];

/** `--backend`: where the worker runs what it takes (a worker cannot hand its tasks to another queue). */
function localBackend(given: string | undefined): LocalBackendType {
  if (given === undefined) return 'worker-pool';
  if ((LOCAL_BACKENDS as readonly string[]).includes(given)) return given as LocalBackendType;
  const near = nearest(given, LOCAL_BACKENDS);
  const why = given === 'queue' ? ' (a worker runs what it takes from the queue here, on one of these)' : near ? `; did you mean "${near}"?` : '';
  throw new WorkerUsageError(`--backend must be one of ${LOCAL_BACKENDS.join(', ')}, got ${JSON.stringify(given)}${why}`);
}

/**
 * `--grant`, the most handlers are granted here. A stop signal while `--grant @-` waits for
 * standard input is the worker's first signal with nothing to drain (exit 0; after a SIGHUP, by
 * that signal): said, and 'stopped'. Not a failure ("ERROR: stopped by SIGTERM …", exit 1), which
 * a supervisor stopping a worker that had not started yet would log as one.
 */
async function readCap(grant: string | undefined): Promise<PermissionSpec | undefined | 'stopped'> {
  try {
    return grant === undefined ? undefined : await readGrant(grant);
  } catch (error) {
    if (!(error instanceof StoppedWhileReading)) throw error;
    process.stderr.write(`${error.signal}: stopped while --grant @- waited for standard input, before the worker joined its pool: nothing ran\n`);
    return 'stopped';
  }
}

/** `kb-plugin-exec worker …`: resolves with the exit code once the worker has drained. */
export async function runWorkerCommand(argv: string[]): Promise<number> {
  const args = joinNegativeValues(argv, WORKER_OPTIONS);
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: WORKER_OPTIONS });
  const empty = emptyFlag(values);
  if (empty) throw new WorkerUsageError(emptyFlagMessage(empty));
  const repeated = repeatedFlagMessage(args, WORKER_OPTIONS);
  if (repeated) throw new WorkerUsageError(repeated);
  const home = unexpandedHomeMessage(values);
  if (home) throw new WorkerUsageError(home);
  if (values.help) {
    process.stdout.write(WORKER_USAGE);
    return 0;
  }
  if (values.version) return printVersion();
  const plugins = [...(values.plugins ?? []), ...positionals].map((dir) => path.resolve(dir));
  if (!values.nats) throw new WorkerUsageError('worker needs --nats <url>');
  if (plugins.length === 0) throw new WorkerUsageError('worker needs --plugins <dir>');
  // A folder that is not there (or holds no kb.plugin.json) is a typo on the command line; an invalid manifest is not (exit 1).
  const folderMistakes = plugins.map(pluginFolderMistake).filter((mistake) => mistake !== undefined);
  if (folderMistakes.length) throw new WorkerUsageError(folderMistakes.join('\n'));
  // Every flag is checked before the worker joins the pool: one that joins and then exits on a
  // usage error takes tasks it never runs (they wait for their redelivery).
  const drainTimeoutMs = drainTimeout(values['drain-timeout']);
  const cap = await readCap(values.grant);
  if (cap === 'stopped') return 0;
  const maxPayloadBytes = positiveInt(values['max-payload-bytes'], '--max-payload-bytes');
  let connection: { servers: string[] } & ReturnType<typeof natsAuth>;
  try {
    connection = { servers: natsServers(values.nats), ...natsAuth(values) };
    // The pool's trust boundary: no handler may log in as this worker.
    forgetNatsVariables();
  } catch (error) {
    throw error instanceof NatsFlagError ? new WorkerUsageError(error.message) : error;
  }
  const backend = localBackend(values.backend);
  const started = await startUnlessStopped(() =>
    startExecutionWorker({
      connection,
      plugins,
      backend: { type: backend, ...(cap ? { permissions: cap } : {}) },
      ...(maxPayloadBytes ? { maxPayloadBytes } : {}),
      ...(values.concurrency ? { concurrency: positiveInt(values.concurrency, '--concurrency') } : {}),
      ...(values.pool ? { pool: values.pool } : {}),
      ...(values.prefix ? { subjectPrefix: values.prefix } : {}),
      ...(values['workspace-root'] ? { workspace: { root: values['workspace-root'] } } : {}),
      ...(values.id ? { id: values.id } : {}),
    }),
    givenFlags(values),
  );
  if (started === 'stopped') return 0;
  const { worker, stopping } = started;
  const lift = guardWorkerExit(worker, backend);
  // Stopped as it joined: what it may have taken meanwhile drains, and it exits as a first signal's drain does.
  if (stopping) return worker.drain({ timeoutMs: drainTimeoutMs }).then(() => 0).finally(lift);
  // Listening before "ready" is out: a supervisor that stops it as soon as it reads that line
  // met Node's default (killed, no drain) about one time in four.
  const stopped = untilStopped(worker, drainTimeoutMs, lift);
  process.stdout.write(`ready ${worker.id}\n`);
  return stopped.finally(lift);
}

/**
 * The worker started by `start`, listening for a stop signal meanwhile (connecting to its servers,
 * loading its plugins): before, Node's default ended it there by the signal, silently, where a
 * first signal is documented to drain, say so and exit 0. The first is said, and the start let
 * end ('stopped' if it fails then: nothing ran); a second ends the process at once by its code.
 */
async function startUnlessStopped(start: () => Promise<ExecutionWorker>, flags: ReturnType<typeof givenFlags>): Promise<{ worker: ExecutionWorker; stopping: boolean } | 'stopped'> {
  let stopping: StopSignal | undefined;
  const lift = onStopSignals((signal) => {
    if (stopping) return endProcess(SIGNAL_EXIT[signal]);
    stopping = signal;
    process.stderr.write(`${signal}: stopping before the worker has joined its pool (nothing runs): once its start ends; ${signal} again stops it now\n`);
  });
  try {
    return { worker: await start(), stopping: stopping !== undefined };
  } catch (error) {
    if (stopping) return 'stopped';
    // A --nats, --pool, --prefix or --id the worker refused: the command line's mistake, named as its flag.
    const mistake = flagMistake(error, flags);
    throw mistake ? new WorkerUsageError(mistake) : error;
  } finally {
    lift();
  }
}

/**
 * Serve until a signal: the first drains (exit 0); a second stops what runs now, each caller told
 * (WORKER_CRASHED), and exits 128 + its number; a third exits at once. Before, a second signal
 * met Node's default and killed the worker: its callers waited for the missing heartbeats, and
 * the running executions' workspaces stayed.
 */
function untilStopped(worker: ExecutionWorker, drainTimeoutMs: number, liftExitGuard: () => void): Promise<number> {
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      const code = 128 + (os.constants.signals[signal] ?? 0);
      signals++;
      if (signals === 1) {
        // Said, so that an operator does not take the wait for a hang (and stop what runs with a second signal).
        const running = worker.running === 0 ? 'nothing runs' : `waiting up to ${drainTimeoutMs} ms for the ${worker.running} execution(s) running`;
        process.stderr.write(`${signal}: draining: taking nothing new, ${running}; ${signal} again stops them now\n`);
        void worker.drain({ timeoutMs: drainTimeoutMs }).then(() => resolve(0));
      } else if (signals === 2) {
        process.stderr.write(`${signal} again: stopping what runs now\n`);
        void worker.close().then(() => resolve(code));
      } else {
        // At once, with the executions still running: their workspaces go now (their handlers with the process).
        liftExitGuard();
        removeLiveWorkspaces();
        endProcess(code);
      }
    };
    // SIGHUP too: its terminal closed (a worker started by hand over ssh) ended it on the spot.
    onStopSignals(onSignal);
    // Closed by itself (its own machinery failed, said as a warning): a failure, for a supervisor to restart it.
    void worker.closed.then(() => {
      if (signals > 0) return;
      process.stderr.write(`ERROR: worker ${worker.id} stopped by itself (see the warning above): start it again\n`);
      resolve(1);
    });
  });
}
