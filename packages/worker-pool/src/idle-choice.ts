/** Host side: which idle thread takes a task. */

/**
 * An idle thread for a task of handler `key`: the one that ran that handler last, else a fresh
 * one, else the one used last. A thread whose handler left code to run later declines another
 * handler's task (and is retired), so two handlers that take turns keep a thread each. One ended
 * since (its idle time up, found spinning, shutdown) is on its way out: not handed anything.
 */
export function takeIdle<T extends { readonly endedBy: unknown; readonly lastHandler: string | undefined }>(idle: T[], key: string): T | undefined {
  let chosen = -1;
  for (let i = idle.length - 1; i >= 0; i--) {
    const thread = idle[i]!;
    if (thread.endedBy) continue;
    if (thread.lastHandler === key) {
      chosen = i;
      break;
    }
    if (chosen < 0 || (thread.lastHandler === undefined && idle[chosen]!.lastHandler !== undefined)) chosen = i;
  }
  return chosen < 0 ? undefined : idle.splice(chosen, 1)[0];
}
