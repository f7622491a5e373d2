/**
 * Exit codes of a run stopped by a signal: 128 + the signal's number, as shells report them. SIGHUP
 * (its terminal closed, an ssh session cut) too: by default it ended the process on the spot,
 * leaving the workspace behind (Node restores SIGHUP's default action at start, so `nohup` never
 * kept a Node process alive, and listening overrides nothing).
 */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
export type StopSignal = keyof typeof SIGNAL_EXIT;
export const STOP_SIGNALS = Object.keys(SIGNAL_EXIT) as StopSignal[];

let hungUp = false;
/** endProcess was called: an 'exit' from now on is the command's own. */
let ending = false;

/** Whether a SIGHUP came: the command's terminal may be gone (see endProcess). */
export function hangupSeen(): boolean {
  return hungUp;
}

/** Listens with `on` for each stop signal, calling `stop` with its name; returns the removal. */
export function onStopSignals(stop: (signal: StopSignal) => void): () => void {
  const heard = (signal: StopSignal) => () => {
    if (signal === 'SIGHUP') hungUp = true;
    stop(signal);
  };
  const listeners = STOP_SIGNALS.map((signal) => [signal, heard(signal)] as const);
  for (const [signal, listener] of listeners) process.on(signal, listener);
  return () => {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  };
}

/** Whether the command itself is ending the process (endProcess), not code it ran (a handler's timer calling process.exit). */
export function commandEnding(): boolean {
  return ending;
}

/**
 * Ends the process with `code`; after a SIGHUP, by that signal itself (129 in a shell), its
 * cleanup done: its terminal may be gone, and process.exit() would give the terminal back its
 * settings, which then fails (EIO) and aborts (Node 20: an assertion and its stack trace, a core
 * dump where they are kept).
 */
export function endProcess(code: number): void {
  ending = true;
  if (!hungUp) return void process.exit(code);
  process.removeAllListeners('SIGHUP');
  process.kill(process.pid, 'SIGHUP');
}
