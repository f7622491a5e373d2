/** How long a `meet.arrive` waits for the rest of its group before it fails the handler. */
const MEET_WAIT_MS = 10_000;

/**
 * A host platform: a `kv` service that records calls, a `secrets` service for permission tests,
 * and `meet`, a rendezvous on the host that every backend reaches the same way (`ctx.platform`).
 */
export function testPlatform() {
  const store = new Map<string, unknown>([['greeting', 'hello']]);
  const calls: Array<{ service: string; method: string; args: unknown[] }> = [];
  const record = (method: string, args: unknown[]) => calls.push({ service: 'kv', method, args });
  return {
    calls,
    kv: {
      async get(key: string) {
        record('get', [key]);
        return store.get(key) ?? null;
      },
      async set(key: string, value: unknown) {
        record('set', [key, value]);
        store.set(key, value);
        return true;
      },
      async delete(key: string) {
        record('delete', [key]);
        return store.delete(key);
      },
      async echo(value: unknown) {
        record('echo', [value]);
        return value;
      },
      async fail(message: string) {
        record('fail', [message]);
        throw new Error(message);
      },
      /** A result no backend can send back to a handler (a function inside, whose source the handler must not see). */
      async unsendable() {
        record('unsendable', []);
        return { label: 'has a function', format: () => 'the host secret' };
      },
      /** A result with a getter that throws (an ORM record read after its session closed): it cannot be read, so it cannot cross. */
      async unreadable() {
        record('unreadable', []);
        return Object.defineProperty({ label: 'has a getter that throws' }, 'owner', {
          enumerable: true,
          get() {
            throw new Error('the session is closed');
          },
        });
      },
      /** A result holding a URL: Node 22 and later do not clone one (Node 20 makes it {}). */
      async link() {
        record('link', []);
        return { label: 'has a URL', at: new URL('https://example.org/') };
      },
    },
    secrets: {
      async read() {
        return 'top secret';
      },
    },
    meet: rendezvous(),
  };
}

/**
 * `arrive(group, size)` resolves once `size` calls for `group` are waiting together, with that
 * size. The callers are handlers that have not returned yet, so their meeting proves they ran at
 * the same time; a backend running them one after another leaves the first waiting, and it fails
 * after MEET_WAIT_MS saying how many arrived.
 */
function rendezvous() {
  const groups = new Map<string, Array<() => void>>();
  return {
    async arrive(group: string, size: number): Promise<number> {
      const waiting = groups.get(group) ?? [];
      groups.set(group, waiting);
      await new Promise<void>((resolve, reject) => {
        const release = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          reject(new Error(`only ${waiting.length} of ${size} executions of "${group}" were running at the same time`));
          waiting.splice(waiting.indexOf(release), 1);
        }, MEET_WAIT_MS);
        timer.unref();
        waiting.push(release);
        if (waiting.length === size) for (const arrived of waiting.splice(0)) arrived();
      });
      return size;
    },
  };
}
