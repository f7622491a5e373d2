/**
 * SIGUSR1 opens a Node process's inspector (its debugger, on 127.0.0.1:9229), and a debugger
 * connected there runs any code in that process. Unsandboxed, a child shares its host's pids, user
 * and network (Node 20 to 24 do not restrict it under the permission model), so a handler with no
 * permissions at all could `process.kill(process.ppid, 'SIGUSR1')`, connect to the host's inspector
 * (`fetch` and the global `WebSocket` of Node 22 and later) and read any file as the host (measured
 * on Node 22 and 24). Under the model a child therefore sends SIGUSR1 to no process but itself, and
 * `process._debugProcess` (SIGUSR1 by another name) is refused. Other signals stay as they were
 * (docs/backends/subprocess.md: not restricted without the sandbox).
 */
import { constants } from 'node:os';

const SIGUSR1 = constants.signals.SIGUSR1;

interface ProcessInternals {
  /** Node's raw kill, which `process.kill` calls with a signal number (lib/internal/process/per_thread.js). */
  _kill(pid: number, signal: number): number;
  _debugProcess?: (pid: number) => void;
}

function refused(pid: unknown): Error {
  const message = `SIGUSR1 to process ${String(pid)} is refused: it opens that process's inspector, which would run the plugin's code there`;
  return Object.assign(new Error(message), { code: 'ERR_ACCESS_DENIED', permission: 'Inspector', resource: 'SIGUSR1' });
}

export function refuseInspectorSignals(): void {
  const internals = process as unknown as ProcessInternals;
  const kill = internals._kill;
  const self = process.pid;
  const apply = Reflect.apply;
  const guarded = {
    _kill(pid: number, signal: number): number {
      // The raw kill turns each argument into a number itself ('10', or an object's valueOf called
      // once more): turned here once, what it is given is what was checked.
      const [target, sent] = [pid | 0, signal | 0];
      if (sent === SIGUSR1 && target !== self) throw refused(target);
      return apply(kill, process, [target, sent]) as number;
    },
    _debugProcess(pid: number): never {
      throw refused(pid);
    },
  };
  for (const name of ['_kill', '_debugProcess'] as const) {
    if (name === '_debugProcess' && typeof internals._debugProcess !== 'function') continue;
    Object.defineProperty(process, name, { value: guarded[name], writable: false, configurable: false, enumerable: true });
  }
}
