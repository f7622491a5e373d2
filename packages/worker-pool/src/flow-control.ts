/**
 * What a thread may send the host before the host has read it. A handler that logs or emits in a
 * tight loop posts faster than the host's event loop reads; unpaced, the messages would pile up
 * in the host's memory (2 million 1 KB log lines took the host to 2.2 GB). Paced, the handler's
 * own thread blocks once WINDOW units are unread, and goes on as the host reads: nothing is
 * dropped, and the host's memory stays bounded whatever the plugin does.
 *
 * The count lives in the SharedArrayBuffer the thread sends with its hello (ThreadHello.wake):
 * [0] wakes an idle thread (the host bumps it per task), [1] counts the units the host has read,
 * [2] is 1 while the thread waits for the host to read. The counts wrap as int32s.
 */

/** Units in flight at most: about 16 MB of text, or 4096 small messages. */
const WINDOW = 4096;
/** Characters per unit: a message counts one unit per 4 KB of its text, and one at least. */
const UNIT_CHARS = 4096;
/** How much of a message is looked at to weigh it (its strings and byte arrays, a few levels down). */
const WEIGH_NODES = 64;
/** How long one wait lasts before the thread looks again (the host wakes it sooner). */
const WAIT_SLICE_MS = 50;

export const FLOW_SLOTS = 5;
/** The slot where the thread counts the tasks it has taken (ThreadHello.wake). */
export const TAKEN = 3;
/** The slot the thread sets to 1 while it waits for a task in Atomics.wait, and back to 0 when it wakes. */
export const WAITING_FOR_TASK = 4;
const READ = 1;
const WAITING = 2;

// Taken before plugin code can replace them.
const load = Atomics.load;
const store = Atomics.store;
const wait = Atomics.wait;
const add = Atomics.add;
const notify = Atomics.notify;
const isView = ArrayBuffer.isView;

/** Thread side: call before each message of an execution; blocks while the host is WINDOW units behind. */
export class ThreadFlow {
  readonly #shared: Int32Array;
  #sent = 0;

  constructor(shared: Int32Array) {
    this.#shared = shared;
  }

  /** Wait for room for a message of `units`, then count it as sent. */
  pace(units: number): void {
    const shared = this.#shared;
    while (((this.#sent - load(shared, READ)) | 0) >= WINDOW) {
      store(shared, WAITING, 1);
      const read = load(shared, READ);
      if (((this.#sent - read) | 0) < WINDOW) break;
      wait(shared, READ, read, WAIT_SLICE_MS);
    }
    store(shared, WAITING, 0);
    this.#sent = (this.#sent + units) | 0;
  }

  /** A message counted by pace() could not be posted after all: the host will never read it. */
  unsent(units: number): void {
    this.#sent = (this.#sent - units) | 0;
  }
}

/** Host side: the host has read a message of `units`; wakes the thread if it waits for that. */
export function markRead(shared: Int32Array, units: number): void {
  add(shared, READ, units);
  if (load(shared, WAITING) === 1) notify(shared, READ);
}

/** The units of a message: one, plus one per 4 KB of the text and bytes found in it. */
export function unitsOf(message: unknown): number {
  let chars = 0;
  const stack: unknown[] = [message];
  let looked = 0;
  try {
    while (stack.length > 0) {
      const value = stack.pop();
      if (typeof value === 'string') chars += value.length;
      else if (isView(value)) chars += value.byteLength;
      else if (value !== null && typeof value === 'object') {
        for (const key in value) {
          if (++looked > WEIGH_NODES) return units(chars);
          stack.push((value as Record<string, unknown>)[key]);
        }
      }
    }
  } catch {
    // A getter of the handler's threw: posting the message will say so.
  }
  return units(chars);
}

function units(chars: number): number {
  return 1 + Math.floor(chars / UNIT_CHARS);
}
