import type { ChildProcess } from 'node:child_process';
import type { SandboxStatus } from './sandbox-status.js';

/**
 * Signal everything a child started (`child`, spawned in a process group of its own). Sandboxed,
 * Node runs in a session of its own under the sandbox's init: SIGTERM goes to Node itself, and
 * SIGKILL to bubblewrap's group and to the init — the pid namespace, every process in it
 * included, ends with its init.
 */
export function signalChildGroup(child: ChildProcess, sandbox: SandboxStatus | undefined, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (process.platform === 'win32') return void child.kill(signal);
  if (!sandbox) return signalProcess(-pid, signal);
  const node = signal === 'SIGTERM' ? sandbox.nodePid() : undefined;
  if (node !== undefined) return signalProcess(node, 'SIGTERM');
  // SIGKILL, or a SIGTERM before Node is there to get it.
  signalProcess(-pid, 'SIGKILL');
  if (sandbox.initPid !== undefined) signalProcess(sandbox.initPid, 'SIGKILL');
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
    process.on('exit', () => {
      for (const each of registered) each();
    });
  }
  registered.add(kill);
  return () => registered.delete(kill);
}
