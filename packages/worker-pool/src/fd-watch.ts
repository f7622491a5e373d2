/**
 * Thread side: the file descriptors plugin code opened on this thread and left open. A
 * descriptor is the process's: one a handler forgets stays open for the host too, until the
 * thread exits (Node closes a thread's own then), so a plugin that leaks a few per execution
 * would run the whole host out of descriptors (EMFILE) on a thread kept for thousands of them.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/** Descriptors a thread may hold open between executions (a plugin's log file, a cache) before it is retired. */
const MAX_LEFT_OPEN = 64;

type Callback = (error: unknown, fd?: unknown) => void;

/**
 * Wraps `fs.open`, `fs.openSync`, `fs.close` and `fs.closeSync` (what file streams use too) to
 * count what is open, and `fs.promises.open` to follow the FileHandles it makes (weakly: Node
 * closes one when it is collected, and counting must not keep it); installed before any plugin
 * code runs, for `node:fs` and `node:fs/promises` as imported too.
 */
export class FdWatch {
  readonly #open = new Set<number>();
  /** FileHandles plugin code opened: open until their `fd` reads -1 (closed) or they are collected. */
  readonly #handles = new Set<WeakRef<{ fd: number }>>();

  constructor() {
    this.#wrapDescriptors();
    this.#wrapFileHandles();
    syncBuiltinESMExports();
  }

  #wrapFileHandles(): void {
    const promises = fs.promises as unknown as { open: (...args: unknown[]) => Promise<{ fd: number }> };
    const realOpen = promises.open;
    const handles = this.#handles;
    // A method keeps the name `open` that code looking at fs.promises.open.name expects.
    promises.open = {
      async open(...args: unknown[]) {
        const handle = await Reflect.apply(realOpen, promises, args);
        handles.add(new WeakRef(handle));
        return handle;
      },
    }.open;
  }

  #wrapDescriptors(): void {
    const api = fs as unknown as Record<'open' | 'openSync' | 'close' | 'closeSync', (...args: unknown[]) => unknown>;
    const { open, openSync, close, closeSync } = api;
    const opened = (fd: unknown): void => {
      if (typeof fd === 'number') this.#open.add(fd);
    };
    const closing = (fd: unknown): void => {
      if (typeof fd === 'number') this.#open.delete(fd);
    };
    api.openSync = (...args) => {
      const fd = Reflect.apply(openSync, fs, args);
      opened(fd);
      return fd;
    };
    api.open = (...args) => {
      const callback = args.at(-1);
      if (typeof callback === 'function') {
        args[args.length - 1] = (error: unknown, fd?: unknown) => {
          if (!error) opened(fd);
          (callback as Callback)(error, fd);
        };
      }
      return Reflect.apply(open, fs, args);
    };
    api.closeSync = (...args) => {
      closing(args[0]);
      return Reflect.apply(closeSync, fs, args);
    };
    api.close = (...args) => {
      closing(args[0]);
      return Reflect.apply(close, fs, args);
    };
  }

  /** More descriptors opened on this thread are open than a thread may keep. */
  leftOpen(): boolean {
    return this.#open.size + this.#openHandles() > MAX_LEFT_OPEN;
  }

  /** FileHandles still open (closed and collected ones forgotten). */
  #openHandles(): number {
    for (const ref of this.#handles) {
      const handle = ref.deref();
      if (handle === undefined || handle.fd === -1) this.#handles.delete(ref);
    }
    return this.#handles.size;
  }
}
