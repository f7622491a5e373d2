/**
 * Thread side: the child processes handlers start on this thread. A thread's children are
 * collected (waitpid) by its own event loop: once the thread is gone, a child that exits stays a
 * zombie in the host process until the host exits. So a thread retired with a child still
 * running kills it and waits for it to be collected first (a handler's leftover child would not
 * outlive its execution in a subprocess sandbox either). Not the children of those (an `exec`'s
 * shell's command, reparented to init) nor of a nested Worker; and a thread terminated
 * mid-execution (a timeout, an abort, a crash) cannot: docs/backends/worker-pool.md.
 */
import { ChildProcess } from 'node:child_process';
import { startTicks, type ChildTable } from './child-table.js';
import { subscribe } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';

const apply = Reflect.apply;
/** How long a retiring thread waits for its killed children to be collected. */
const REAP_WITHIN_MS = 1000;

export class ChildReaper {
  readonly #running = new Set<ChildProcess>();
  /** Where the host reads the children still running, to kill them if this thread cannot (child-table.ts). */
  #table: ChildTable | undefined;
  // Taken before plugin code runs: it may replace them on the prototypes.
  readonly #once = EventEmitter.prototype.once;
  readonly #removeAll = EventEmitter.prototype.removeAllListeners;
  readonly #kill = ChildProcess.prototype.kill;

  /** Watch every child made on this thread from now on: Node announces each (spawn, exec, execFile, fork) on the `child_process` channel. */
  constructor() {
    subscribe('child_process', (message) => {
      const child = (message as { process?: unknown }).process;
      if (!(child instanceof ChildProcess)) return;
      this.#running.add(child);
      apply(this.#once, child, ['exit', () => (this.#running.delete(child), this.#table?.remove(child.pid))]);
      // Announced before it starts: one that could not (ENOENT …) has no pid once its spawn() returned, and no 'exit' to come.
      queueMicrotask(() => {
        if (child.pid === undefined) this.#running.delete(child);
      });
    });
  }

  /**
   * List the children in `table` from now on, as each spawn() returns: a microtask later, a thread
   * that dies at once (a loop, an exit, a throw right after the spawn) would never list it.
   */
  track(table: ChildTable): void {
    this.#table = table;
    // Node's own method, undocumented but what spawn(), exec() and fork() all call.
    const proto = ChildProcess.prototype as unknown as { spawn(this: ChildProcess, ...args: unknown[]): unknown };
    const spawn = proto.spawn;
    proto.spawn = function spawnListed(this: ChildProcess, ...args: unknown[]): unknown {
      return table.spawning(() => {
        const notBefore = startTicks();
        const returned = apply(spawn, this, args);
        table.add(this.pid, notBefore);
        return returned;
      });
    };
  }

  /** Whether a child it watches is still running. */
  get running(): boolean {
    return this.#running.size > 0;
  }

  /**
   * Kill the children still running, with their listeners taken off (the handler's code does not
   * run for it), and wait for them to be collected. No child starts from then on: one that code
   * a handler left (an interval) started while these are collected would never be.
   */
  async reap(): Promise<void> {
    this.#table?.refuseSpawns();
    if (this.#running.size === 0) return;
    const left = [...this.#running];
    this.#running.clear();
    await Promise.all(left.map((child) => this.#killAndCollect(child)));
  }

  #killAndCollect(child: ChildProcess): Promise<void> {
    // One that never started (ENOENT …), or has exited (its 'exit' listeners taken off by the handler), has nothing to collect.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, REAP_WITHIN_MS);
      for (const emitter of [child, ...child.stdio]) if (emitter) apply(this.#removeAll, emitter, []);
      apply(this.#once, child, ['exit', () => (clearTimeout(timer), this.#table?.remove(child.pid), resolve())]);
      try {
        apply(this.#kill, child, ['SIGKILL']);
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}
