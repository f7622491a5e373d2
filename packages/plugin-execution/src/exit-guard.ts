import fs from 'node:fs';
import { WorkerCrashedError, WorkspaceManager, serializeError, type BuiltInBackendType } from '@kb-labs/plugin-execution-core';
import { removeTreeSync } from '@kb-labs/plugin-execution-core/host-kit';
import { printableJson } from './printable-json.js';
import { commandEnding } from './stop-signals.js';
import { printableText } from './terminal-text.js';

export interface ExitGuardOptions {
  backend: BuiltInBackendType;
  pluginId: string;
  handlerId: string;
  json: boolean;
  /** Whether a --platform module runs in this process too (it may be what called process.exit). */
  platform: boolean;
  keepWorkspace: boolean;
}

/**
 * While an execution runs, the CLI's own process may end under it: an in-process handler (or a
 * --platform service, on any backend) that calls process.exit(0) would make the command exit 0
 * with no result, and exit 2 would pass for a usage error; an uncaught exception from a timer
 * ends it with Node's stack and no code. An 'exit' listener (the process's last synchronous
 * moment: process.exitCode set there is the exit code, on Node 20, 22 and 24) says it as a
 * failure, WORKER_CRASHED as the other backends say a runner's exit, exits 1, and removes the
 * workspace the backend had no turn left to remove. Returns the function that lifts the guard.
 */
export function guardExit(options: ExitGuardOptions): () => void {
  return onProcessEnd((code, uncaught) => {
    const error = crashError(options, uncaught, code);
    const kept = ownWorkspaces(options.keepWorkspace);
    if (options.json) {
      const meta = { backend: options.backend, pluginId: options.pluginId, handlerId: options.handlerId, ...(kept ? { workspaceDir: kept } : {}) };
      writeQuietly(1, `${printableJson({ ok: false, error: serializeError(error), meta }, 2)}\n`);
    }
    writeQuietly(2, `${error.code}: ${error.message}\n${!options.json && kept ? `workspace kept at ${printableText(kept)}\n` : ''}`);
  });
}

/**
 * From the execution's end until the command ends the process itself (endProcess): a callback the
 * handler left running in this process (in-process), or a --platform service's, that calls
 * process.exit(0) or throws meanwhile (while a large result still drains to a slow reader of
 * stdout, or the backend shuts down) would end the command with its exit code, the result cut
 * short, and no word. Said on stderr as WORKER_CRASHED, exit code 1. Never lifted: the command's
 * own exit passes.
 */
export function guardExitAfterResult(options: ExitGuardOptions): void {
  const { backend, pluginId, handlerId } = options;
  onProcessEnd((code, uncaught) => {
    const how = uncaught ? `${uncaughtWords(uncaught)} (Node prints it with its stack)` : `process.exit(${code})`;
    const by = backend === 'in-process' ? `a callback it left running in the CLI's process${options.platform ? ' (or a --platform service)' : ''}` : 'a --platform service';
    const hint = backend === 'in-process' ? ' (--backend worker-pool or subprocess runs the handler in a thread or process of its own)' : '';
    writeQuietly(2, `WORKER_CRASHED: handler "${handlerId}" of plugin "${pluginId}" was over, but ${by} ended the CLI by ${how} before the command had written its result and ended: what was still to be written is lost${hint}\n`);
  }, commandEnding);
}

export type Uncaught = 'uncaught-exception' | 'unhandled-rejection';

/** How an uncaught one is said: "an unhandled promise rejection" or "an uncaught exception". */
export function uncaughtWords(uncaught: Uncaught): string {
  return uncaught === 'unhandled-rejection' ? 'an unhandled promise rejection' : 'an uncaught exception';
}

/**
 * Run `said` in the process's 'exit' listener, told the exit code and whether an uncaught exception
 * or rejection is what ends it, after setting the exit code to 1 (a failure, whatever code ended
 * it), unless `ownExit` says the command itself ends it. Returns the function that takes both listeners off.
 */
export function onProcessEnd(said: (code: number, uncaught: Uncaught | undefined) => void, ownExit: () => boolean = () => false): () => void {
  let uncaught: Uncaught | undefined;
  const onUncaught = (_error: unknown, origin: string) => {
    uncaught ??= origin === 'unhandledRejection' ? 'unhandled-rejection' : 'uncaught-exception';
  };
  const onExit = (code: number) => {
    if (ownExit()) return;
    process.exitCode = 1;
    said(code, uncaught);
  };
  process.on('uncaughtExceptionMonitor', onUncaught).on('exit', onExit);
  return () => {
    process.off('uncaughtExceptionMonitor', onUncaught).off('exit', onExit);
  };
}

/**
 * A queue worker's process ending on its own: with `--backend in-process` a handler that calls
 * process.exit (or throws from a timer) ends the worker with it, silently and with the handler's
 * exit code (0 would read as a drain). Said on stderr with what ran, as WORKER_CRASHED (what its
 * callers are told), exit code 1, and the running executions' workspaces removed. Returns the
 * function that lifts the guard (the worker's own exits: drain, second and third signal).
 */
export function guardWorkerExit(worker: { readonly id: string; readonly running: number }, backend: string): () => void {
  return onProcessEnd((code, uncaught) => {
    const how = uncaught ? `${uncaughtWords(uncaught)} (printed above)` : `process.exit(${code})`;
    const running = worker.running === 1 ? '1 execution' : `${worker.running} executions`;
    const hint = backend === 'in-process' ? ' (a handler running in-process ends the worker with it: --backend worker-pool or subprocess runs each in a thread or process of its own)' : '';
    removeLiveWorkspaces();
    writeQuietly(2, `WORKER_CRASHED: worker ${worker.id} ended by ${how} while ${running} ran; their callers are told WORKER_CRASHED${hint}\n`);
  });
}

function crashError(options: ExitGuardOptions, uncaught: Uncaught | undefined, code: number): WorkerCrashedError {
  const { backend, pluginId, handlerId } = options;
  const subject = `handler "${handlerId}" of plugin "${pluginId}"`;
  const inProcess = backend === 'in-process';
  const where = inProcess ? "in-process, in the CLI's own process" : `on the ${backend} backend`;
  const message = uncaught
    ? `${uncaughtWords(uncaught)} (Node prints it with its stack) ended the CLI's process while ${subject} ran ${where}, before a result`
    : inProcess
      ? `${subject}${options.platform ? ' (or a --platform service)' : ''} called process.exit(${code}) while it ran ${where}: the CLI ended with it, before a result`
      : `a --platform service called process.exit(${code}) while ${subject} ran ${where}: the CLI ended with it, before a result`;
  const hint = inProcess ? ' (--backend worker-pool or subprocess runs the handler in a thread or process of its own)' : '';
  return new WorkerCrashedError(`${message}${hint}`, { details: { reason: uncaught ?? 'exit', pluginId, handlerId, exitCode: code } });
}

/**
 * This process's leases not released yet (WorkspaceManager.liveLeases: the execution's, which
 * the backend had no turn left to release): removed, as `sweep` would once the process is gone,
 * or with --keep-workspace the one kept, returned.
 */
function ownWorkspaces(keep: boolean): string | undefined {
  const leases = WorkspaceManager.liveLeases();
  if (keep) {
    // Marked kept as a lease's keep() marks it, so that no sweep removes it.
    if (leases[0] !== undefined) writeMarkQuietly(`${leases[0]}.kept`);
    return leases[0];
  }
  removeLiveWorkspaces(leases);
  return undefined;
}

/**
 * Remove this process's leases not released yet, as it exits without giving the backend a turn to
 * (a worker's third signal). What runs them may still be running (a sandboxed child, a thread),
 * swapping folders for links: never followed (removeTreeSync).
 */
export function removeLiveWorkspaces(leases: readonly string[] = WorkspaceManager.liveLeases()): void {
  for (const lease of leases) {
    try {
      removeTreeSync(lease);
    } catch {
      // What cannot be removed now, `kb-plugin-exec sweep` removes later.
    }
  }
}

function writeMarkQuietly(file: string): void {
  try {
    fs.writeFileSync(file, '', { mode: 0o600 });
  } catch {
    // Left unmarked: a sweep may take it once this process is gone.
  }
}

/** A write on the way out: a reader that went away is no reason to fail the exit. */
export function writeQuietly(fd: number, text: string): void {
  try {
    fs.writeSync(fd, text);
  } catch {
    // EPIPE, EAGAIN: nothing more can be said.
  }
}
