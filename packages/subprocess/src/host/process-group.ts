import type { ChildProcess } from 'node:child_process';
import type { SandboxStatus } from './sandbox-status.js';
import { setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';

/** How long bubblewrap's outer process has to collect the killed init and exit, before its group is killed too. */
const OUTER_EXIT_WITHIN_MS = 2000;

/**
 * Signal everything a child started (`child`, spawned in a process group of its own). Sandboxed,
 * Node runs in a session of its own under the sandbox's init: SIGTERM goes to Node itself, and
 * SIGKILL to the init — the pid namespace, every process in it included, ends with its init — and
 * bubblewrap's outer process, the init's parent, collects it and exits. Killed at the same moment,
 * the outer process would leave the init for the host's own init to collect: a zombie for good
 * where the host is that init (`node server.js` as pid 1 of a container), one per execution.
 * `atExit`: the host is exiting and cannot wait; the group goes at once too.
 */
export function signalChildGroup(child: ChildProcess, sandbox: SandboxStatus | undefined, signal: NodeJS.Signals, atExit = false): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (process.platform === 'win32') return void child.kill(signal);
  if (!sandbox) return signalProcess(-pid, signal);
  const node = signal === 'SIGTERM' ? sandbox.nodePid() : undefined;
  if (node !== undefined) return signalProcess(node, 'SIGTERM');
  // SIGKILL, or a SIGTERM before Node is there to get it.
  const init = sandbox.initPid;
  if (!sandbox.started || atExit) {
    // Not set up yet (or the host is going): nothing to wait for.
    signalProcess(-pid, 'SIGKILL');
    if (init !== undefined) signalProcess(init, 'SIGKILL');
    return;
  }
  // Undefined once Node has exited: the init is ending by itself.
  if (init !== undefined) signalProcess(init, 'SIGKILL');
  // Not reaped yet (its exit not seen), the outer process still holds its pid: the group is its own.
  const stillThere = () => child.exitCode === null && child.signalCode === null;
  setTimeout(() => stillThere() && signalProcess(-pid, 'SIGKILL'), OUTER_EXIT_WITHIN_MS).unref();
}

function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: nothing left to signal.
  }
}

/** What to kill when the host process exits: a host that ends without `shutdown()`, or exits in the middle of it. */
const registered = new Set<() => void>();
let hooked = false;

/**
 * Run `kill` (synchronously) if the host process exits while it is registered; returns the
 * function that unregisters it. One 'exit' listener per process, whatever the number of children.
 * A child whose sandbox is still being set up would otherwise outlive its host: bubblewrap's
 * inner process waits for the outer one, which the host's exit ends, before it asks to die with it.
 */
export function killAtExit(kill: () => void): () => void {
  if (!hooked) {
    hooked = true;
    // A function of the module's, not one made here: that would share this call's scope, and keep
    // its `kill` (and the first child's whole execution through it) for the life of the process.
    process.on('exit', killRegistered);
  }
  registered.add(kill);
  return () => registered.delete(kill);
}

function killRegistered(): void {
  for (const each of registered) each();
}
