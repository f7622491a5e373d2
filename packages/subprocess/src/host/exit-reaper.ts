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
