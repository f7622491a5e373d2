/** The large part of each answer turnWatchingPlatform's `kv.echo` gives: 2 MiB, over the size that takes a turn of its own. */
export const TURN_WATCH_PAYLOAD = 'p'.repeat(2 * 1024 * 1024);

/**
 * A host platform whose `kv.echo(i)` answers `{ i, payload }`, `payload` a getter: as each answer is
 * first read (to be encoded or copied for the handler), `turnedBefore` records whether the host's
 * event loop turned since the last one was, and `onRead` is called.
 */
export function turnWatchingPlatform(onRead: () => void = () => undefined): { turnedBefore: boolean[]; platform: { kv: { echo(i: number): Promise<{ i: number; payload: string }> } } } {
  const turnedBefore: boolean[] = [];
  let turned = true;
  const echo = async (i: number) => {
    let read = false;
    return {
      i,
      get payload() {
        if (!read) {
          read = true;
          turnedBefore.push(turned);
          turned = false;
          setImmediate(() => (turned = true));
          onRead();
        }
        return TURN_WATCH_PAYLOAD;
      },
    };
  };
  return { turnedBefore, platform: { kv: { echo } } };
}
