/**
 * Preloaded (`--require`) by every Worker a handler starts on a pool thread, and by those started
 * in turn: closes that thread's inspector before its own code runs, and has its Workers preload
 * this too (inspector-lock.ts).
 */
import workerThreads, { Worker } from 'node:worker_threads';
import { closeInspector, constructWithInspectorClosed } from './inspector-lock.js';

closeInspector();
const Original = Worker;
const Closed = function Worker(this: unknown, ...args: unknown[]): object {
  if (new.target === undefined) throw new TypeError("Class constructor Worker cannot be invoked without 'new'");
  return constructWithInspectorClosed(Original, args, new.target);
};
Object.defineProperty(Closed, 'name', { value: 'Worker' });
Closed.prototype = Original.prototype;
Object.setPrototypeOf(Closed, Object.getPrototypeOf(Original));
// Nor through its prototype: `Worker.prototype.constructor` (or an instance's) is this one too.
Object.defineProperty(Original.prototype, 'constructor', { value: Closed, writable: true, configurable: true, enumerable: false });
(workerThreads as unknown as { Worker: unknown }).Worker = Closed;
