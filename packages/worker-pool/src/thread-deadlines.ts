/** How long the host waits for a thread to do what it should before it acts without it (pool-thread.ts). */

/**
 * How long a thread has to exit once terminated. V8 stops JavaScript at once, but not a
 * synchronous call into the system (opening a FIFO nobody writes to, execSync of a long command,
 * a long scryptSync), nor one call of a built-in that loops without looking for termination
 * (`Array.prototype.indexOf.call({ length: 2 ** 53 - 1 })`): the thread goes only when that call
 * returns, which may be never.
 */
export const STOP_WITHIN_MS = 2000;
/** How long a thread's termination waits for a spawn() under way there to return (and list its child): terminated in between, the child would outlive it. */
export const SPAWN_WAIT_MS = 500;
/** How long a retired thread has to collect its handler's children (ChildReaper waits 1 s for them) before it is ended anyway. */
export const REAP_WAIT_MS = 1500;
/** How long after its channel closed a thread still running is taken to have closed it itself. */
export const CHANNEL_CLOSED_GRACE_MS = 500;
/** How long after its load ended a thread told its execution was stopped has to answer (it does so at once) before it is ended. */
export const ANSWER_WITHIN_MS = 100;
/** How long after it was abandoned a thread still there is warned of (KB_PLUGIN_THREAD_STUCK). */
export const STUCK_WARNING_AFTER_MS = 8000;
/** How long close() waits for terminated threads to be gone (one that takes longer than STOP_WITHIN_MS is abandoned first). */
export const CLOSE_WAIT_MS = 5000;
/** A thread that has not taken the execution handed to it this long ago is ended (ThreadPool.#checkTaken). */
export const TAKE_WITHIN_MS = 1000;
/** How often threads are looked at for that: a fourth of it, so that one is ended within 1.25 × TAKE_WITHIN_MS. */
export const TAKE_CHECK_EVERY_MS = 250;
